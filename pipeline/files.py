"""Atomic writes and content hashes: no reader ever sees a half-written artifact."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HASH_CHUNK_BYTES = 1 << 20
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # item ids usable as file names as they are


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create 0600/0700; artifacts get the modes a plain open()/mkdir() would give.
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temp file beside `path`; on success it is fsynced and renamed onto `path`.

    On an exception the temp file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp directory beside `path`; on success it replaces `path` in one rename.

    An existing `path` is moved aside first and deleted only after the new one is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, DIR_MODE)
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# names atomic_open / atomic_dir give: .<name>.p<pid>.<8 random>.tmp|old (older versions: no p<pid>)
STALE_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(tmp|old)$")
TEMP_OWNER = re.compile(r"\.p(\d+)\.[A-Za-z0-9_]{8}\.(tmp|old)$")


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.p{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _stale(name: str) -> bool:
    """A temp name of a process that no longer runs (or of an older version, which named no pid)."""
    if not STALE_TEMP.match(name):
        return False
    owner = TEMP_OWNER.search(name)
    return owner is None or not _pid_alive(int(owner.group(1)))


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete the temp files and folders that atomic_open / atomic_dir left under `folder` when their
    process was killed mid-write (never read as outputs, but they take disk space). Temps of a process
    that still runs (its pid is in the name) are left alone: that process may be writing them. Returns
    how many were removed."""
    removed = 0
    for parent, dirs, files in os.walk(folder):
        for name in [d for d in dirs if STALE_TEMP.match(d)]:
            dirs.remove(name)  # never descend into a temp folder, stale or live
            if _stale(name):
                shutil.rmtree(Path(parent) / name, ignore_errors=True)
                removed += 1
        for name in (f for f in files if _stale(f)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(Path(parent) / name)
                removed += 1
    return removed


def remove_stale_sibling_temps(path: str | os.PathLike) -> int:
    """Delete the stale temps atomic_open / atomic_dir left beside `path` while replacing it."""
    path = Path(path)
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in path.parent.iterdir():
            if entry.name.startswith(f".{path.name}.") and _stale(entry.name):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                removed += 1
    return removed


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def sha256_paths(paths: list[Path]) -> str:
    """One hash over the names and contents of files (directories are walked, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file).encode())
            digest.update(sha256_file(file).encode() if file.exists() else b"<missing>")
    return digest.hexdigest()


def stat_signature(paths: list[Path]) -> str:
    """One hash over the names, sizes and modification times of files (cheap: nothing is read). For the
    many audio files a manifest names, where hashing every byte at each `dictune run` would cost minutes."""
    digest = hashlib.sha256()
    for path in sorted({Path(p) for p in paths}):
        try:
            info = path.stat()
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0<missing>\n".encode())
    return digest.hexdigest()


def id_file_name(item_id: str, suffix: str = ".wav") -> str:
    """`<id><suffix>` when the id is a safe file name; otherwise a cleaned id plus a hash of the id."""
    if SAFE_ID.fullmatch(item_id):
        return f"{item_id}{suffix}"
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._")[:80] or "item"
    digest = hashlib.sha1(item_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{cleaned}-{digest}{suffix}"
