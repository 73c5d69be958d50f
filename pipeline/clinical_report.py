"""The clinical-error part of the evaluate report: differences with intervals, examples, markdown.

    clinical_section(scores, ids, options) -> dict   report.json's `clinical`
    clinical_markdown(report) -> list[str]           its section of report.md

The counts themselves are in report.json's results[split][system]["clinical"] (Scores.to_dict; the
rules are in pipeline.clinical). `clinical` adds, per split and system, the difference to the base
system with a paired bootstrap 95% interval that resamples whole reports (pipeline.metrics), and up to
`report_examples` examples per kind from the domain split: {kinds{negation | laterality | measurement:
[{system, id, kind, change, ref, hyp}]}, comparisons[...], grouped_by_report_id}.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.clinical_counts import KINDS

COMPARED = ("clinical_errors", "clinical_report_share")  # metrics with a bootstrap interval in the table
BASELINE = "base"  # as in pipeline.report
KIND_LABELS = {"negation": "Negation", "laterality": "Laterality", "measurement": "Number / unit / level"}
NOTE = (
    "Negation dropped or added, side changed (left / right / bilateral), number, unit or vertebral level "
    "changed; counted by the rules of `pipeline/clinical.py` on the scoring form; {per_report}. Δ: difference "
    "to the base system in errors per 100 utterances and in percentage points of reports with at least one "
    "error, paired bootstrap 95% CI over reports."
)
TABLE_HEAD = (
    "| split | system | utterances | reports | negation | laterality | number / unit / level | per 100 utt. "
    "| reports with ≥ 1 (%) | Δ per 100 utt. [CI] | Δ reports with ≥ 1 [CI] |"
)


def clinical_section(
    scores: dict[str, dict[str, Any]], ids: dict[str, list[str]], options: Any
) -> dict[str, Any]:
    """report.json's `clinical`; scores[split][system] are pipeline.metrics.Scores."""
    from pipeline.bootstrap import paired_bootstrap

    comparisons = []
    for split, by_system in scores.items():
        base = by_system.get(BASELINE)
        for name, other in by_system.items():
            if base is None or name == BASELINE:
                continue
            diffs = paired_bootstrap(
                base, other, options.bootstrap_samples, options.seed, COMPARED, by_report=True
            )
            comparisons += [
                {"split": split, "system": name, "baseline": BASELINE, **d.to_dict()} for d in diffs.values()
            ]
    split = options.domain_split if options.domain_split in scores else next(iter(scores), None)
    grouped = any(sc.groups is not None for by_system in scores.values() for sc in by_system.values())
    return {"split": split, "grouped_by_report_id": grouped, "comparisons": comparisons,
            "kinds": _examples(scores.get(split, {}), ids.get(split, []), options.report_examples)}  # fmt: skip


def _examples(by_system: dict[str, Any], ids: list[str], count: int) -> dict[str, list[dict[str, str]]]:
    """Up to `count` errors per kind, taken from the systems in turn (each system shows its own)."""
    out = {}
    for kind in KINDS:
        queues = [
            [{"system": name, "id": i, **e.to_dict()} for i, u in zip(ids, sc.per_utterance) for e in u.clinical
             if e.group == kind]
            for name, sc in by_system.items()
        ]  # fmt: skip
        picked: list[dict[str, str]] = []
        while len(picked) < count and any(queues):
            picked += [q.pop(0) for q in queues if q][: count - len(picked)]
        out[kind] = picked
    return out


# ---------------------------------------------------------------------------------------------- markdown


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _delta(row: dict[str, Any] | None) -> str:
    if not row or row.get("delta") is None or row.get("ci_low") is None:
        return "–"
    return f"{100 * row['delta']:+.1f} [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}]"


def clinical_markdown(report: dict[str, Any]) -> list[str]:
    """The clinical-error table (every split and system) and the examples; [] when nothing was scored."""
    section = report.get("clinical")
    results = report.get("results", {})
    if not section or not results:
        return []
    per_report = ("a report is one dictation: the pieces cut from it are counted together"
                  if section.get("grouped_by_report_id") else "each utterance is counted as its own report")  # fmt: skip
    lines = ["## Clinical errors", "", NOTE.format(per_report=per_report), "", TABLE_HEAD,
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]  # fmt: skip
    diffs = {(c["split"], c["system"], c["metric"]): c for c in section.get("comparisons", [])}
    for split, by_system in results.items():
        for system, result in by_system.items():
            c = result.get("clinical")
            if c is None:
                continue
            share = None if c["report_share"] is None else 100 * c["report_share"]
            cells = [c["utterances"], c["reports"], c["negation"], c["laterality"], c["measurement"],
                     _num(c["per_100_utterances"]["total"]), _num(share),
                     _delta(diffs.get((split, system, "clinical_errors"))),
                     _delta(diffs.get((split, system, "clinical_report_share")))]  # fmt: skip
            lines.append(f"| {split} | {system} | " + " | ".join(str(x) for x in cells) + " |")
    lines.append("")
    return lines + _examples_markdown(section)


def _examples_markdown(section: dict[str, Any]) -> list[str]:
    kinds = section.get("kinds") or {}
    if not any(kinds.values()):
        return []
    lines = [f"### Clinical error examples (split `{section['split']}`, scoring-normalized text)", ""]
    for kind in KINDS:
        examples = kinds.get(kind) or []
        if not examples:
            continue
        lines += [f"{KIND_LABELS[kind]}:", ""]
        for ex in examples:
            lines += [f"- `{ex['id']}`, {ex['system']}: {ex['kind']} `{ex['change']}`",
                      f"  - reference: {ex['ref']}", f"  - {ex['system']}: {ex['hyp']}"]  # fmt: skip
        lines.append("")
    return lines
