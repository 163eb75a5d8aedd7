"""Write folders atomically: a reader never finds a half-written checkpoint or export under the final name."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        pass
    return True


def remove_leftovers(out) -> list[Path]:
    """Delete the temporary folders that killed writers of `out` left (their process is gone); returns them."""
    out, gone = Path(out), []
    for tmp in out.parent.glob(f".{out.name}.partial-*"):
        pid = tmp.name.removeprefix(f".{out.name}.partial-").split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            gone.append(tmp)
    return gone


@contextmanager
def atomic_directory(out_dir, overwrite: bool = False):
    """Yield a temporary sibling folder; on success it replaces `out_dir`, on failure it is deleted. Leftovers of
    killed writers of `out_dir` are removed first."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty: choose another folder or pass overwrite=True (--overwrite).")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    tmp.rename(out)
