"""Span verification against the final-report generator's truth (issue "what real reports demand", part 3).

    python scripts/verify_check.py configs/radiology_final_reports.yaml [--json OUT]

Reads the truth synthesize wrote (synthesize.final_reports.truth: per recording its edits, and per token of
its final report whether that token was said there) and the pieces the segment stage kept for every ingest
source reading synthesize.final_reports.manifest. A kept piece's text is the report's tokens
[ref_tokens[0], ref_tokens[1]) of its parent. For each source it prints:

    precision      kept report tokens that were said / kept report tokens          (goal >= 95%, verified)
    recall         said report tokens that were kept / said report tokens          (goal >= 90%, verified)
    mismatched     recordings filed with the wrong report that kept no piece      (goal >= 95%, verified)
    unsaid kept    per edit kind, the report tokens nobody said that reached a piece

A source in segment.verify_sources is verified; the others (the same recordings cut as if verbatim) show
what training on the raw archive would take in. Token-level: a report token is a whitespace token.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_config
from pipeline.manifest import iter_jsonl

GOALS = {"precision": 0.95, "recall": 0.90, "mismatched_rejected": 0.95}


def load_truth(path: Path) -> dict[str, dict]:
    return {row["id"]: row for _, row in iter_jsonl(path)}


def check_source(pieces_path: Path, truth: dict[str, dict]) -> dict:
    kept: dict[str, set[int]] = defaultdict(set)  # parent id -> kept token indices
    for _, row in iter_jsonl(pieces_path):
        parent = row.get("parent_id", row["id"])
        first, end = row.get("ref_tokens") or (0, len(truth[parent]["spoken"]))
        kept[parent].update(range(first, end))
    said_total = said_kept = kept_total = 0
    unsaid_by_kind: Counter = Counter()
    mismatched = rejected = 0
    per_item = []
    for rid, row in truth.items():
        flags = row["spoken"]
        mine = kept.get(rid, set())
        kinds = [e["kind"] for e in row["edits"]]
        said_total += flags.count("1")
        said_kept += sum(flags[i] == "1" for i in mine)
        kept_total += len(mine)
        unsaid = sum(flags[i] == "0" for i in mine)
        for kind in kinds or ["none"]:
            unsaid_by_kind[kind] += unsaid
        if "mismatch" in kinds:
            mismatched += 1
            rejected += not mine
        per_item.append({"id": rid, "edits": kinds, "tokens": len(flags), "kept": len(mine), "unsaid_kept": unsaid})
    return {
        "pieces_file": str(pieces_path),
        "recordings": len(truth),
        "precision": said_kept / kept_total if kept_total else None,
        "recall": said_kept / said_total if said_total else None,
        "kept_tokens": kept_total,
        "said_tokens": said_total,
        "mismatched": mismatched,
        "mismatched_rejected": rejected / mismatched if mismatched else None,
        "unsaid_kept_by_edit": dict(unsaid_by_kind),
        "items": per_item,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    final = config.synthesize.final_reports if config.synthesize else None
    if final is None:
        print(f"{args.config}: no synthesize.final_reports section", file=sys.stderr)
        return 2
    truth = load_truth(Path(config.synthesize.manifest_dir) / final.truth)
    target = (Path(config.synthesize.manifest_dir) / final.manifest).resolve()
    out = {}
    for source in config.ingest.sources:
        if Path(source.path).resolve() != target:
            continue
        pieces = config.stage_dir("segment") / f"{source.name}.jsonl"
        if not pieces.is_file():
            print(f"{pieces}: not found; run `dictune run {args.config} --only segment` first", file=sys.stderr)
            return 2
        result = check_source(pieces, truth)
        result["verified"] = source.name in config.segment.verify_sources
        out[source.name] = result
        pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
        goals = ""
        if result["verified"]:
            met = [k for k, g in GOALS.items() if result[k] is not None and result[k] >= g]
            goals = f"  goals met: {len(met)}/{len(GOALS)} ({', '.join(met) or 'none'})"
        print(f"{source.name} ({'verified' if result['verified'] else 'as if verbatim'}): "
              f"precision {pct(result['precision'])} of {result['kept_tokens']} kept tokens, "
              f"recall {pct(result['recall'])} of {result['said_tokens']} said tokens, "
              f"mismatched rejected {pct(result['mismatched_rejected'])} of {result['mismatched']}{goals}")
        print(f"  unsaid tokens kept, by edit: {result['unsaid_kept_by_edit']}")
    if not out:
        print(f"no ingest source reads {target}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
