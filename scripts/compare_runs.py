"""Compare one system of two arms (one run each, or several training seeds each) on the same test splits.

    python scripts/compare_runs.py BASE_CONFIG NEW_CONFIG [--system adapted] [--base-system base]
        [--splits test,test_unseen,test_general]   (a split "a+b" pools two splits' utterances)
        [--base-work-dir DIR ...] [--new-work-dir DIR ...] [--json OUT]

Reads each run's cached evaluate transcripts (<work_dir>/evaluate/transcripts/<system>/<split>.jsonl: the
scoring forms of reference and hypothesis) and prints, per split, WER and B-WER on the lexicon terms the
BASE run's training text holds (seen) and lacks (unseen), new minus base with the 95% paired bootstrap
interval over sentences (pipeline.bootstrap; utterances with the same reference text, one sentence read
by several test voices, are drawn together: they are not independent samples). Every run must have scored the same utterances with the same
base model, decoding options and prompt (its evaluate/report.json): only the adapter may differ. Used for
"does adding archive audio (synthesize.archive) help the demo's held-out terms without costing the rest?".

Several runs per arm (repeat --base-work-dir / --new-work-dir, e.g. one per training seed): an arm's figure
is the mean over its runs (each utterance's counts summed over the runs, so a resample keeps an utterance's
runs together), and each run's own figure is printed beside it, so that seed spread and sentence sampling
both show. Without the options each arm is its config's work_dir.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bootstrap import by_group, matrix_bootstrap, metric_value, utterance_matrix
from pipeline.config import load_config
from pipeline.files import atomic_write_json
from pipeline.lexicon import Lexicon, load_lexicon
from pipeline.manifest import iter_jsonl
from pipeline.metrics import score
from pipeline.new_words import seen_unseen

SAMPLES = 2000
DECODED_ALIKE = ("base_model", "decoding", "prompt")  # evaluate settings every compared run must share
METRICS = (("WER", "wer", False), ("B-WER seen", "b_wer", True), ("B-WER unseen", "b_wer", False))


def transcripts(work_dir: Path, system: str, split: str) -> dict[str, tuple[str, str]]:
    """{utterance id: (reference, hypothesis)}; a split "a+b" pools the splits a and b (ids must differ)."""
    out: dict[str, tuple[str, str]] = {}
    for part in split.split("+"):
        path = work_dir / "evaluate" / "transcripts" / system / f"{part}.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path}: not found; run `dictune evaluate` for that run first")
        rows = {row["id"]: (row["ref_norm"], row["hyp_norm"]) for _, row in iter_jsonl(path)}
        if out.keys() & rows.keys():
            raise SystemExit(f"{path}: utterance ids also in another split of {split}; cannot pool them")
        out |= rows
    return out


def evaluate_settings(work_dir: Path) -> dict:
    path = work_dir / "evaluate" / "report.json"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; run `dictune evaluate` for that run first")
    report = json.loads(path.read_text(encoding="utf-8"))
    return {key: report.get(key) for key in DECODED_ALIKE}


def check_decoded_alike(dirs: Sequence[Path]) -> None:
    first = evaluate_settings(dirs[0])
    for d in dirs[1:]:
        got = evaluate_settings(d)
        for key in DECODED_ALIKE:
            if got[key] != first[key]:
                raise SystemExit(f"{d / 'evaluate' / 'report.json'}: {key} {got[key]!r} differs from "
                                 f"{dirs[0]}'s {first[key]!r}; compare runs evaluated alike")  # fmt: skip


def compare(base_dirs: Sequence[Path], new_dirs: Sequence[Path], system: str, splits: Sequence[str],
            seen: Lexicon, unseen: Lexicon, seed: int, samples: int = SAMPLES,
            base_system: str | None = None) -> list[dict]:  # fmt: skip
    """One row per split and metric: each arm's mean over its runs, new - base with its paired bootstrap
    interval, and every run's own figure (base_runs, new_runs). The base arm is scored on `base_system`
    (default: `system`), e.g. the base model against the adapted one of the same runs."""
    check_decoded_alike([*base_dirs, *new_dirs])
    arms = [[(d, base_system or system) for d in base_dirs], [(d, system) for d in new_dirs]]
    rows = []
    for split in splits:
        runs = {run: transcripts(run[0], run[1], split) for arm in arms for run in arm}
        first = runs[arms[0][0]]
        for (d, sys_name), got in runs.items():
            if set(got) != set(first) or any(got[k][0] != first[k][0] for k in first):
                raise SystemExit(f"{split}: {d} scored different utterances or references than {base_dirs[0]} "
                                 f"(system {sys_name})")  # fmt: skip
        ids = sorted(first)
        refs = [first[k][0] for k in ids]
        for label, metric, seen_terms in METRICS:
            lexicon = None if metric == "wer" else seen if seen_terms else unseen
            # one row per reference sentence: its renderings by several voices are one draw, not independent
            counts = {run: by_group(utterance_matrix(score(refs, [got[k][1] for k in ids], lexicon,
                                                           normalizer=None)), refs)
                      for run, got in runs.items()}  # fmt: skip
            pooled = [sum(counts[run] for run in arm) for arm in arms]
            diff = matrix_bootstrap(pooled[0], pooled[1], (metric,), samples, seed)[metric]
            if diff.delta is None or diff.ci_low is None:
                continue
            own = [[metric_value(counts[run], metric) for run in arm] for arm in arms]
            rows.append({"split": split, **diff.to_dict(), "metric": label,
                         "base_runs": own[0], "new_runs": own[1]})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_config")
    parser.add_argument("new_config")
    parser.add_argument("--system", default="adapted")
    parser.add_argument("--base-system", help="the base arm's system (default: --system), e.g. base")
    parser.add_argument("--splits", default="test,test_unseen,test_general")
    parser.add_argument("--base-work-dir", action="append", help="a run of the base arm (repeat for several)")
    parser.add_argument("--new-work-dir", action="append", help="a run of the new arm (repeat for several)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    base_cfg, new_cfg = load_config(args.base_config), load_config(args.new_config)
    base_dirs = [Path(d) for d in args.base_work_dir or [base_cfg.work_dir]]
    new_dirs = [Path(d) for d in args.new_work_dir or [new_cfg.work_dir]]
    seen, unseen = seen_unseen(base_cfg, load_lexicon(base_cfg.lexicon))
    rows = compare(base_dirs, new_dirs, args.system, args.splits.split(","), seen, unseen, base_cfg.seed,
                   base_system=args.base_system)
    print(f"{len(base_dirs)} base run(s), {len(new_dirs)} new run(s); figures in %, runs' own figures in ()")
    for r in rows:
        each = ("  (" + " ".join(f"{100 * v:.1f}" for v in r["base_runs"]) + " | "
                + " ".join(f"{100 * v:.1f}" for v in r["new_runs"]) + ")")  # fmt: skip
        print(f"{r['split']:13s} {r['metric']:13s} base {100 * r['a']:5.1f}  new {100 * r['b']:5.1f}  "
              f"difference {100 * r['delta']:+5.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"
              + (each if len(base_dirs) + len(new_dirs) > 2 else ""))
    if args.json:
        atomic_write_json(args.json, {"system": args.system, "base_system": args.base_system or args.system,
                                      "base_work_dirs": [str(d) for d in base_dirs],
                                      "new_work_dirs": [str(d) for d in new_dirs], "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
