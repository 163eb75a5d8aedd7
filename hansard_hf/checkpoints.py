"""The checkpoint protocol. A `checkpoint-N` folder is complete only when its marker, written last and atomically,
lists every file with its size and a checksum of its whole content, and the files still agree; a checkpoint that
does not is skipped with one line naming what is wrong. The marker goes before a folder is rewritten, rotation
deletes old checkpoints only after the new one is complete, and one live run holds an output folder at a time."""

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path

from .files import CHECKSUM, checksum

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "checkpoint_complete"  # JSON manifest {"step", "tokenizer", "files"}, written last
CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")
LOCK_FILE = ".hansard_hf.lock"
_verified: dict[tuple, list[str]] = {}  # (folder, its files' sizes and times): what problems() found in every byte


def step_of(folder) -> int | None:
    """N of a `checkpoint-N` folder, else None."""
    match = re.fullmatch(r"checkpoint-(\d+)", Path(folder).name)
    return int(match.group(1)) if match else None


def mark_complete(folder, step: int, tokenizer: str | None = None) -> None:
    """Write the marker of a fully written checkpoint: its manifest (size and checksum of every file), atomically (a
    temporary file, then a rename). The files were just written: they are read back from the page cache."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(COMPLETE_MARKER)):
        files[str(path.relative_to(folder))] = {"bytes": path.stat().st_size, CHECKSUM: checksum(path)}
    tmp = folder / f"{COMPLETE_MARKER}.tmp"
    tmp.write_text(json.dumps({"step": step, "tokenizer": tokenizer, "files": files}, indent=1))
    os.replace(tmp, folder / COMPLETE_MARKER)


def unmark(folder) -> None:
    """Make a checkpoint incomplete before anything in it is rewritten."""
    (Path(folder) / COMPLETE_MARKER).unlink(missing_ok=True)


def read_marker(folder) -> dict | None:
    """The manifest of a marked checkpoint ({} for a marker of the older plain-number kind), None when unmarked."""
    marker = Path(folder) / COMPLETE_MARKER
    try:
        text = marker.read_text()
    except FileNotFoundError:
        return None
    try:
        manifest = json.loads(text)
    except ValueError:
        return {} if text.strip().isdigit() else {"unreadable": True}
    return manifest if isinstance(manifest, dict) else {"unreadable": True}


def other_tokenizer(folder, fingerprint: str | None) -> str | None:
    """The tokenizer fingerprint a checkpoint's manifest records, when it differs from `fingerprint` (known on both
    sides): a model trained on other token ids."""
    saved = (read_marker(folder) or {}).get("tokenizer")
    return saved if saved and fingerprint and saved != fingerprint else None


def _stats(folder: Path) -> tuple:
    return tuple(sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                        for p in folder.rglob("*") if p.is_file()))


def problems(folder, content: bool = True) -> list[str]:
    """What is wrong with a checkpoint folder, by its manifest: [] for a complete one. With `content`, every byte of
    every file is read and checked against its checksum (once in a process while no file changes); without, sizes
    only."""
    folder = Path(folder)
    manifest = read_marker(folder)
    if manifest is None:
        return [f"no {COMPLETE_MARKER} marker (its writing was cut short)"]
    if manifest.get("unreadable"):
        return [f"{COMPLETE_MARKER} is not a manifest"]
    key = (str(folder.resolve()), _stats(folder)) if content else None
    if key in _verified:
        return _verified[key]
    expected = manifest.get("files") or {name: {} for name in CHECKPOINT_FILES}  # an older marker: the files exist
    found = []
    for name, info in expected.items():
        path = folder / name
        kind = next((k for k in (CHECKSUM, "sha256") if info.get(k)), None)
        if not path.is_file():
            found.append(f"{name} is missing")
        elif "bytes" in info and (size := path.stat().st_size) != info["bytes"]:
            found.append(f"{name} has {size:,} bytes, the manifest {info['bytes']:,}")
        elif content and kind and checksum(path, kind) != info[kind]:
            found.append(f"{name} changed after it was written (checksum)")
    if key:
        _verified[key] = found
    return found


def unchecked_files(folder) -> list[str]:
    """The files of a complete checkpoint its manifest has no checksum for (manifests written before whole-file
    checksums held them for files up to 16 MB only): these are checked by size alone."""
    manifest = read_marker(folder) or {}
    files = manifest.get("files") or {name: {} for name in CHECKPOINT_FILES}
    return [name for name, info in files.items() if not (info.get(CHECKSUM) or info.get("sha256"))]


def checkpoints(output_dir) -> list[Path]:
    """The checkpoint-N folders of a run, newest (highest N) first."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=step_of, reverse=True)


def last_complete_checkpoint(output_dir, warn: bool = True) -> Path | None:
    """The newest checkpoint whose manifest holds, every byte checked; marked ones that fail it are skipped with one
    line each."""
    for folder in checkpoints(output_dir):
        if read_marker(folder) is None:
            continue  # cut short while being written: never resumed from
        found = problems(folder)
        if not found:
            if warn and (unchecked := unchecked_files(folder)):
                logger.warning("%s was written before whole-file checksums: %s checked by size only.", folder,
                               ", ".join(unchecked))
            return folder
        if warn:
            logger.warning("Skipping %s: %s. Falling back to the checkpoint before it.", folder, "; ".join(found))
    return None


def rotate(output_dir, limit: int | None, keep=(), save_every: int = 0) -> list[Path]:
    """Delete complete checkpoints beyond the newest `limit` ones, interim ones (with `save_every`: a step that is
    not a multiple of it, saved by the clock or a signal) once a newer one is complete, and unfinished ones older than
    the newest complete one (leftovers of killed writers); never the newest complete one, nor those in `keep`.
    Returns what went."""
    found = checkpoints(output_dir)
    complete = [folder for folder in found if not problems(folder, content=False)]  # unmarked: a problem too
    if not complete:
        return []
    interim = [folder for folder in complete[1:] if save_every > 0 and step_of(folder) % save_every]
    regular = [folder for folder in complete if folder not in interim]
    doomed = regular[max(limit, 1):] if limit and limit > 0 else []
    doomed += interim + [folder for folder in found if folder not in complete and step_of(folder) < step_of(complete[0])]
    keep = {Path(k).resolve() for k in keep if k}
    doomed = [folder for folder in doomed if folder.resolve() not in keep]
    for folder in doomed:
        shutil.rmtree(folder)
    return doomed


def is_locked(output_dir) -> bool:
    """Whether a live run holds `output_dir` (its lock is taken; the OS drops it when the process dies)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no lock
        return False
    try:
        fd = os.open(Path(output_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # taken for an instant when free: never blocks the run
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


class OutputDirLock:
    """An exclusive lock on an output folder while a run writes to it; the OS releases it when the process dies.
    One lock per run: whoever writes first takes it and hands it on (taking it again nests). Use `with`, or
    acquire/release."""

    def __init__(self, output_dir):
        self.folder = Path(output_dir).resolve()
        self.fd, self.depth = None, 0

    def acquire(self) -> None:
        self.depth += 1
        if self.depth > 1:
            return
        try:
            import fcntl
        except ImportError:  # no flock (Windows): no lock
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)  # as the umask allows
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            self.depth = 0
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise OSError(errno.EBUSY, f"{self.folder} is in use by another live run: wait for it to finish, or "
                              "give this run another output_dir") from None
            raise
        self.fd = fd

    def release(self) -> None:
        self.depth = max(self.depth - 1, 0)
        if self.depth == 0 and self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
