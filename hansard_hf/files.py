"""Files and folders: written atomically (a reader never finds a half-written checkpoint or export under the final
name), with the permissions the user's umask gives new files (the rest of a group can read what we write), checksums
of whole files, and a "did you mean" for a path that is not there."""

import difflib
import errno
import hashlib
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import xxhash

CHECKSUM = "xxh3_128"  # of a file's whole content: ~6 GB/s from disk, 4x sha256 (bench/checkpoint_cost.py: d24 in 0.5 s)


def umask() -> int:
    """The process umask, read without changing it where Linux tells it (/proc), else set and restored at once."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^Umask:\s*([0-7]+)", status, re.M).group(1), 8)
    except (OSError, AttributeError):
        mask = os.umask(0o077)
        os.umask(mask)
        return mask


def share_as_umask(path) -> None:
    """Give `path` (a file, or a folder and everything in it, all written by us) the mode the umask gives a new file
    or folder: temporary folders (0700) and files written through a temporary file (safetensors >= 0.8: 0600,
    safetensors#782) otherwise stay private, and nobody else in the group can load the model."""
    mask, path = umask(), Path(path)
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if item.is_symlink():
            continue
        executable = item.is_dir() or item.stat().st_mode & 0o100
        os.chmod(item, (0o777 if executable else 0o666) & ~mask)


def checksum(path, kind: str = CHECKSUM) -> str:
    """The hex digest of a file's whole content (xxh3_128; sha256 for the manifests written before it)."""
    digest = xxhash.xxh3_128() if kind == CHECKSUM else hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_error(error: Exception) -> OSError | None:
    """`error` as the OSError a failed write is, or None when it is not one: torch.save reports a full disk as a
    RuntimeError ("[enforce fail at inline_container.cc] unexpected pos", "PytorchStreamWriter failed", "basic_ios"),
    safetensors as its SafetensorError ("I/O error: No space left on device (os error 28)")."""
    if isinstance(error, OSError):
        return error
    text = str(error)
    if type(error).__name__ == "SafetensorError" and "I/O error" in text or isinstance(error, RuntimeError) and any(
            mark in text for mark in ("inline_container", "PytorchStreamWriter", "basic_ios", "file write failed")):
        code = re.search(r"os error (\d+)", text)
        return OSError(int(code.group(1)) if code else errno.EIO, text.splitlines()[0])
    return None


def is_hub_id(source) -> bool:
    """Whether `source` names a Hub repo (owner/name) rather than a local path: nothing by that name here, and its
    first part is not a local folder (runs/hansard_tny is a mistyped local path, not a repo)."""
    path = Path(source)
    return (re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)) is not None and not path.exists()
            and not path.parent.is_dir())


def did_you_mean(path: Path) -> str:
    """" (did you mean NAME?)" for a missing path whose folder holds a close name, else ""."""
    folder = path.parent if path.parent.is_dir() else None
    names = [p.name for p in folder.iterdir()] if folder else []
    guess = difflib.get_close_matches(path.name, names, n=1, cutoff=0.8)
    return f" (did you mean {folder / guess[0]}?)" if guess else ""


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
    """Yield a temporary sibling folder; on success it replaces `out_dir` with the umask's permissions, on failure it
    is deleted. Leftovers of killed writers of `out_dir` are removed first."""
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
    share_as_umask(tmp)
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    tmp.rename(out)
