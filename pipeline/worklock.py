"""One dictune run per work dir: an exclusive lock on `<work_dir>/.dictune.lock` (filelock, flock-based).

The operating system drops the lock when its holder dies (kill -9 included), so there is no stale lock to
clear by hand. Beside it, `.dictune.lock.owner` names the holder (pid, host, command, start time) for the
message a second run prints; it is best effort (a full disk may leave it out) and never decides anything.
Nested holds in one process (run_all -> run_stage) share the one lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.errors import DictuneError

LOCK_NAME = ".dictune.lock"
OWNER_NAME = ".dictune.lock.owner"

_held: dict[Path, list] = {}  # resolved work dir -> [FileLock, hold count] held by this process


class WorkDirBusy(DictuneError):
    """Another process runs stages in this work dir."""


@contextlib.contextmanager
def hold_work_dir(work_dir: str | os.PathLike, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the work dir's lock (waiting up to wait_seconds), or raise WorkDirBusy naming the holder."""
    work = Path(work_dir).absolute()
    work.mkdir(parents=True, exist_ok=True)
    key = work.resolve()
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    lock = FileLock(str(work / LOCK_NAME))
    try:
        lock.acquire(timeout=wait_seconds)
    except Timeout:
        raise WorkDirBusy(f"{work}: {holder(work)}; wait for it to finish (one run per work dir)") from None
    _held[key] = [lock, 1]
    try:
        _write_owner(work)
        yield
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            (work / OWNER_NAME).unlink()
        lock.release()


def holder(work_dir: str | os.PathLike) -> str:
    """'in use by dictune pid N (host, since ..., `command`)' from the owner file, as far as it is known."""
    try:
        owner = json.loads((Path(work_dir) / OWNER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "in use by another dictune process (its pid is not recorded)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    return (f"in use by dictune pid {owner.get('pid')} on {owner.get('host')} since {started} "
            f"(`{owner.get('command')}`)")  # fmt: skip


def _write_owner(work: Path) -> None:
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
             "command": " ".join(["dictune", *sys.argv[1:]])[:300]}  # fmt: skip
    with contextlib.suppress(OSError):  # the lock itself is what counts
        (work / OWNER_NAME).write_text(json.dumps(owner) + "\n", encoding="utf-8")
