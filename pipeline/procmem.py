"""A Linux process's memory from /proc, for the benchmark scripts: one reader of the kB fields of
/proc/<pid>/status (VmRSS, VmHWM) and /proc/<pid>/smaps_rollup (Pss).

VmHWM is the peak RSS of the process's own address space, so it starts afresh at exec; ru_maxrss does
not (a child inherits its parent's across fork + exec), which is why the scripts read VmHWM.
"""

from __future__ import annotations

from collections.abc import Iterable


def proc_kb(pid: int | str, keys: Iterable[str], file: str = "status") -> dict[str, int]:
    """The named kB fields of /proc/<pid>/<file> that are present; OSError when the process is gone."""
    keys, out = set(keys), {}
    with open(f"/proc/{pid}/{file}", encoding="ascii", errors="replace") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in keys:
                out[name] = int(rest.split()[0])
    return out


def proc_mb(key: str, pid: int | str = "self") -> float:
    """One kB field of /proc/<pid>/status in MB; NaN when the field is absent."""
    value = proc_kb(pid, (key,)).get(key)
    return float("nan") if value is None else value / 1024
