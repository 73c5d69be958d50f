"""Compare one system of two runs on the same test splits, with paired bootstrap intervals.

    python scripts/compare_runs.py BASE_CONFIG NEW_CONFIG [--system adapted] [--splits test,test_unseen,test_general]
        [--base-work-dir DIR] [--new-work-dir DIR] [--json OUT]

Reads each run's cached evaluate transcripts (<work_dir>/evaluate/transcripts/<system>/<split>.jsonl: the
scoring forms of reference and hypothesis) and prints, per split, WER and B-WER on the lexicon terms the
BASE run's training text holds (seen) and lacks (unseen), new minus base with the 95% paired bootstrap
interval over utterances (pipeline.bootstrap). Both runs must have scored the same utterances. Used for
"does adding archive audio (synthesize.archive) help the demo's held-out terms without costing the rest?".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bootstrap import paired_bootstrap
from pipeline.config import load_config
from pipeline.lexicon import load_lexicon
from pipeline.manifest import iter_jsonl
from pipeline.metrics import score
from pipeline.new_words import seen_unseen

SAMPLES = 2000


def transcripts(work_dir: Path, system: str, split: str) -> dict[str, tuple[str, str]]:
    path = work_dir / "evaluate" / "transcripts" / system / f"{split}.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; run `dictune evaluate` for that run first")
    return {row["id"]: (row["ref_norm"], row["hyp_norm"]) for _, row in iter_jsonl(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_config")
    parser.add_argument("new_config")
    parser.add_argument("--system", default="adapted")
    parser.add_argument("--splits", default="test,test_unseen,test_general")
    parser.add_argument("--base-work-dir")
    parser.add_argument("--new-work-dir")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    base_cfg, new_cfg = load_config(args.base_config), load_config(args.new_config)
    base_dir = Path(args.base_work_dir or base_cfg.work_dir)
    new_dir = Path(args.new_work_dir or new_cfg.work_dir)
    seen, unseen = seen_unseen(base_cfg, load_lexicon(base_cfg.lexicon))
    rows = []
    for split in args.splits.split(","):
        a, b = transcripts(base_dir, args.system, split), transcripts(new_dir, args.system, split)
        if set(a) != set(b) or any(a[k][0] != b[k][0] for k in a):
            raise SystemExit(f"{split}: the two runs scored different utterances or references")
        ids = sorted(a)
        refs = [a[k][0] for k in ids]
        for label, lexicon, metric in (("WER", None, "wer"), ("B-WER seen", seen, "b_wer"), ("B-WER unseen", unseen, "b_wer")):
            sa = score(refs, [a[k][1] for k in ids], lexicon, normalizer=None)
            sb = score(refs, [b[k][1] for k in ids], lexicon, normalizer=None)
            d = paired_bootstrap(sa, sb, SAMPLES, base_cfg.seed, (metric,))[metric]
            if d.delta is None or d.ci_low is None:
                continue
            rows.append({"split": split, "metric": label, **d.to_dict()})
            print(f"{split:13s} {label:13s} base {100 * d.a:5.1f}  new {100 * d.b:5.1f}  "
                  f"difference {100 * d.delta:+5.1f} [{100 * d.ci_low:+.1f}, {100 * d.ci_high:+.1f}]")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
