"""Where a stage's time goes: run one dictune stage under cProfile and print the breakdown.

    .venv/bin/python scripts/profile_stage.py CONFIG STAGE [key=value ...] [--out bench/profile_<stage>]
        [--top 15]

The stage runs in this process exactly as `dictune STAGE CONFIG key=value ...` would (always, stamp or
not). Written: <out>.prof (pstats; `python -m pstats` or snakeviz open it) and <out>.txt, which is also
printed:
  - wall time and CPU time of the stage;
  - "pipeline functions": dictune's own functions by cumulative time (the phases: encoder cache, train
    steps, dev evaluation, decoding, scoring ...), those over 1% of the wall time;
  - "hottest code": functions by self time, where the CPU actually goes (torch ops are C functions, so a
    matmul, an attention kernel or the backward pass appear here by name).
cProfile adds a per-Python-call cost (a few % on torch-bound code, more on pure-Python loops); compare
phases with each other rather than with unprofiled wall times.

Example (the decoder-only train step on the demo's dev clips as training data, 30 steps, fresh cache):
    .venv/bin/python scripts/profile_stage.py configs/radiology_demo.yaml train \\
        work_dir=/tmp/prof train.max_steps=30 train.eval_steps=15 \\
        train.train_manifest=work/radiology_demo/normalize/dev.jsonl \\
        train.dev_manifest=work/radiology_demo/normalize/dev.jsonl "train.extra_train_manifests=[]" \\
        train.replay_manifest=null train.replay_ratio=0 train.general_dev_manifest=null
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = str(ROOT / "pipeline")


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":  # a C function: its name says it all ("<method 'run_backward' ...>")
        return name
    path = Path(filename)
    for anchor in (ROOT, *[Path(p) for p in sys.path if p and "site-packages" in p]):
        try:
            return f"{path.relative_to(anchor)}:{line}({name})"
        except ValueError:
            continue
    return f"{path.name}:{line}({name})"


def summarize(stats: pstats.Stats, wall: float, cpu: float, top: int, title: str) -> str:
    entries = stats.stats  # type: ignore[attr-defined]  # func -> (calls, ncalls, tottime, cumtime, callers)
    lines = [
        f"# {title}",
        "",
        f"wall {wall:.1f} s, CPU {cpu:.1f} s (user+sys, this process and children)",
        "",
    ]
    ours = [(f, v) for f, v in entries.items() if f[0].startswith(PACKAGE) and v[3] >= 0.01 * wall]
    ours.sort(key=lambda kv: -kv[1][3])
    lines += ["## pipeline functions by cumulative time", "", "| function | calls | cumulative s | % of wall |",
              "|---|---:|---:|---:|"]  # fmt: skip
    for func, (_, calls, _, cum, _) in ours[:top]:
        lines.append(f"| {_label(func)} | {calls} | {cum:.1f} | {100 * cum / wall:.1f} |")
    hot = sorted(entries.items(), key=lambda kv: -kv[1][2])[:top]
    lines += [
        "",
        "## hottest code by self time",
        "",
        "| function | calls | self s | % of wall |",
        "|---|---:|---:|---:|",
    ]
    for func, (_, calls, tottime, _, _) in hot:
        lines.append(f"| {_label(func)} | {calls} | {tottime:.1f} | {100 * tottime / wall:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("stage")
    parser.add_argument("overrides", nargs="*", help="key=value, as on the dictune command line")
    parser.add_argument("--out", help="output prefix (default bench/profile_<stage>)")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    from pipeline import runner
    from pipeline.cli import _configure_logging, _stage_overrides
    from pipeline.config import load_config

    _configure_logging(0)
    config = load_config(args.config, _stage_overrides(args.stage, args.overrides))
    out = Path(args.out or f"bench/profile_{args.stage}")
    out.parent.mkdir(parents=True, exist_ok=True)

    usage = lambda: sum(
        getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )  # fmt: skip
    profiler = cProfile.Profile()
    cpu0, start = usage(), time.monotonic()
    profiler.enable()
    try:
        runner.run_stage(config, args.stage, force=True)
    finally:
        profiler.disable()
    wall, cpu = time.monotonic() - start, usage() - cpu0
    profiler.dump_stats(str(out.with_suffix(".prof")))
    stats = pstats.Stats(profiler, stream=io.StringIO())
    title = f"profile: dictune {args.stage} {args.config} {' '.join(args.overrides)}".strip()
    text = summarize(stats, wall, cpu, args.top, title)
    out.with_suffix(".txt").write_text(text)
    print(text)
    print(f"written {out.with_suffix('.txt')} and {out.with_suffix('.prof')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
