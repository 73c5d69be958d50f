"""Faults of the environment (full disk, I/O error, permission, out of memory) versus faults of one item.

An item's own fault (an undecodable file, an empty transcript) rejects that item and the stage goes on.
A fault of the environment would hit every item after it, and it says nothing about the data: the stage
stops at once, writes no stamp and leaves its previous outputs in place, and the CLI reports one line
that names the cause and, for a full disk, the free space the stage needs.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from pipeline.errors import DictuneError

# errno values that describe the machine, not the item being processed
ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM, errno.EMFILE,
     errno.ENFILE, errno.ENOMEM}
)  # fmt: skip
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
MB = 1e6  # bytes per MB in messages


class EnvironmentFailure(DictuneError):
    """A stage stopped by its environment (disk full, I/O error, ...): nothing of it was kept."""

    exit_status = 1  # not the user's input (2): the same command succeeds once the machine is fixed


def is_environment_error(error: BaseException) -> bool:
    """True for MemoryError and OSErrors of the machine (ENOSPC, EIO, EACCES, ...); an item's own error
    (DictuneError, a decoder's error) is never one."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS


KEPT_STAGE = "its previous outputs are kept and no stamp was written"


def describe(
    error: BaseException, stage: str, folder: Path, needed_bytes: int | None = None, kept: str = KEPT_STAGE
) -> str:
    """One line: what failed, the free space of `folder`'s file system (and what the stage needs), and
    what was kept. For an error that is_environment_error accepts."""
    if isinstance(error, MemoryError):
        cause = "out of memory"
    else:
        reason = os.strerror(error.errno) if isinstance(error, OSError) and error.errno else str(error)
        path = getattr(error, "filename", None)
        cause = f"{reason.lower()} ({path})" if path else reason.lower()
    space = ""
    if isinstance(error, OSError) and error.errno in SPACE_ERRNOS:
        space = f"; {free_bytes(folder) / MB:.1f} MB free on {folder}"
        if needed_bytes:
            space += f", the stage needs about {needed_bytes / MB:.1f} MB"
    return f"{stage}: stopped: {cause}{space}; {kept}: fix the machine and rerun"


def free_bytes(folder: Path) -> int:
    """Free bytes on the file system of `folder` (or of its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0
