"""The evaluate stage's report: numbers from pipeline.metrics scores, then report.md and PNG plots.

    build_report(meta, scores, ids, options) -> dict   what report.json holds (plain JSON data)
    write_report(report, out_dir)                      -> report.md, metrics.png, terms.png
    headline_table(report)                             -> the headline markdown table (numbers only)

Keys of the report dict, besides the `meta` given by the stage (name, base_model, systems, notes,
prompt, decoding, splits{split: {utterances, kind}}):
    results{split: {system: Scores.to_dict()}},
    headline{domain_split, general_split, rows[{system, wer, b_wer, u_wer, term_f1, term_error,
    general_wer}]}, comparisons[{split, system, baseline, metric, a, b, delta, ci_low, ci_high}],
    terms{split, before, after, rows[TermChange.to_dict() + error_before, error_after]},
    examples{before, after, fixed[{id, ref, before, after}], still_wrong[...]},
    clinical (pipeline.clinical_report: clinical-error differences with CIs and examples).
Error rates are fractions (0.25 = 25%); the markdown shows percentages.

report.json and report.md quote reference and hypothesis text (examples, wrong renderings): they are
local files for the user. Nothing here logs text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.clinical_report import clinical_markdown, clinical_section
from pipeline.files import atomic_open, atomic_write_text

HEADLINE_COLUMNS = (  # (key, label) of the headline table, in order
    ("wer", "WER"),
    ("b_wer", "B-WER"),
    ("u_wer", "U-WER"),
    ("term_f1", "term F1"),
    ("term_error", "term error"),
    ("general_wer", "general WER"),
)
METRIC_LABELS = dict(HEADLINE_COLUMNS) | {"cer": "CER", "term_recall": "term recall", "term_precision": "term precision"}
TERM_NOTE = ("Term error = 1 − term recall. B-WER: errors on reference words inside lexicon terms; U-WER: on "
             "the other words (Le et al. 2021).")
PLOT_DPI = 110  # dots per inch of the PNGs
MAX_WORSE_TERMS = 20  # terms listed under "got worse"
MAX_PLOTTED_TERMS = 30  # terms on the per-term plot


DOMAIN_METRICS = ("wer", "b_wer", "u_wer", "term_error", "term_f1")  # compared on domain splits
GENERAL_METRICS = ("wer",)  # compared on the general split
BASELINE = "base"  # every comparison is against this system


@dataclass(frozen=True)
class ReportOptions:
    domain_split: str | None  # split of the headline's domain columns, the term table and examples
    general_split: str | None  # split of the headline's general WER
    bootstrap_samples: int = 1000  # paired bootstrap resamples
    seed: int = 1234  # bootstrap draw
    report_examples: int = 5  # utterances per kind in report.md
    report_terms: int = 20  # terms in the "improved most" table


# ---------------------------------------------------------------------------------------------- numbers


def build_report(
    meta: dict[str, Any], scores: dict[str, dict[str, Any]], ids: dict[str, list[str]], options: ReportOptions
) -> dict[str, Any]:
    """report.json: `meta` plus every number; scores[split][system] are pipeline.metrics.Scores."""
    systems = list(next(iter(scores.values()), {}))
    after = next((s for s in ("adapted", "base+prompt") if s in systems), None)
    report = dict(meta, report_terms=options.report_terms)
    report["results"] = {split: {name: sc.to_dict() for name, sc in by_system.items()}
                         for split, by_system in scores.items()}
    report["headline"] = _headline(scores, systems, options)
    report["comparisons"] = _comparisons(scores, options)
    domain = scores.get(options.domain_split or "", {})
    if after and BASELINE in domain:
        report["terms"] = _term_changes(domain[BASELINE], domain[after], options.domain_split, after)
        report["examples"] = _examples(domain[BASELINE], domain[after], ids[options.domain_split], after,
                                       options.report_examples)
    report["clinical"] = clinical_section(scores, ids, options)
    return report


def _value(scores: Any, metric: str) -> float | None:
    rate = {"wer": scores.wer, "b_wer": scores.b_wer, "u_wer": scores.u_wer}.get(metric)
    if metric in ("wer", "b_wer", "u_wer"):
        return rate.rate if rate is not None else None
    terms = scores.terms
    if terms is None:
        return None
    return {"term_f1": terms.f1, "term_error": terms.error_rate}[metric]


def _headline(scores: dict[str, dict[str, Any]], systems: list[str], options: ReportOptions) -> dict[str, Any]:
    domain = scores.get(options.domain_split or "", {})
    general = scores.get(options.general_split or "", {})
    rows = []
    for name in systems:
        row: dict[str, Any] = {"system": name}
        for key, _ in HEADLINE_COLUMNS:
            if key == "general_wer":
                row[key] = general[name].wer.rate if name in general else None
            else:
                row[key] = _value(domain[name], key) if name in domain else None
        rows.append(row)
    return {"domain_split": options.domain_split, "general_split": options.general_split, "rows": rows}


def _comparisons(scores: dict[str, dict[str, Any]], options: ReportOptions) -> list[dict[str, Any]]:
    from pipeline.bootstrap import paired_bootstrap

    rows = []
    for split, by_system in scores.items():
        if BASELINE not in by_system:
            continue
        base = by_system[BASELINE]
        metrics = GENERAL_METRICS if split == options.general_split or base.terms is None else DOMAIN_METRICS
        for name, other in by_system.items():
            if name == BASELINE:
                continue
            diffs = paired_bootstrap(base, other, options.bootstrap_samples, options.seed, metrics)
            for diff in diffs.values():
                if diff.delta is not None and diff.ci_low is not None:
                    rows.append({"split": split, "system": name, "baseline": BASELINE, **diff.to_dict()})
    return rows


def _term_changes(before: Any, after: Any, split: str, after_name: str) -> dict[str, Any]:
    from pipeline.metrics import compare_terms

    rows = []
    for change in compare_terms(before, after):
        row = change.to_dict()
        row["error_before"] = change.misses_before / change.occurrences
        row["error_after"] = change.misses_after / change.occurrences
        rows.append(row)
    return {"split": split, "before": BASELINE, "after": after_name, "rows": rows}


def _examples(before: Any, after: Any, ids: list[str], after_name: str, count: int) -> dict[str, Any]:
    """Utterances the after-system got right where the base was wrong, and ones still wrong after."""
    pairs = list(zip(ids, before.per_utterance, after.per_utterance))
    fixed = [p for p in pairs if p[1].words.errors > 0 and p[2].words.errors == 0]
    fixed.sort(key=lambda p: (-(p[2].term_hits - p[1].term_hits), -p[1].words.errors, p[0]))
    wrong = [p for p in pairs if p[2].words.errors > 0]
    wrong.sort(key=lambda p: (-(p[2].term_ref - p[2].term_hits), -p[2].words.errors, p[0]))

    def row(p: tuple[str, Any, Any]) -> dict[str, str]:
        return {"id": p[0], "ref": p[1].ref, "before": p[1].hyp, "after": p[2].hyp}

    return {"before": BASELINE, "after": after_name, "fixed": [row(p) for p in fixed[:count]],
            "still_wrong": [row(p) for p in wrong[:count]]}


# ---------------------------------------------------------------------------------------------- markdown


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}"


def _signed_pct(value: float) -> str:
    return f"{100 * value:+.1f}"


def headline_table(report: dict[str, Any]) -> str:
    """Markdown table: one row per system, error rates and F1 in percent."""
    rows = report.get("headline", {}).get("rows", [])
    head = "| system | " + " | ".join(label for _, label in HEADLINE_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(HEADLINE_COLUMNS)
    body = [f"| {r['system']} | " + " | ".join(_pct(r.get(k)) for k, _ in HEADLINE_COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def comparison_table(report: dict[str, Any]) -> list[str]:
    """One row per (split, system): each metric's difference to the base with its 95% CI."""
    rows = report.get("comparisons", [])
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    if not rows:
        return []
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in rows:
        cell = f"{_signed_pct(r['delta'])} [{_signed_pct(r['ci_low'])}, {_signed_pct(r['ci_high'])}]"
        cells.setdefault((r["split"], r["system"]), {})[r["metric"]] = cell
    lines = [
        "| split | system | " + " | ".join(METRIC_LABELS.get(m, m) for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for (split, system), by_metric in cells.items():
        lines.append(f"| {split} | {system} | " + " | ".join(by_metric.get(m, "–") for m in metrics) + " |")
    return lines


SPLIT_COLUMNS = (("wer", "WER"), ("cer", "CER"), ("b_wer", "B-WER"), ("u_wer", "U-WER"))


def _splits_table(report: dict[str, Any]) -> list[str]:
    """Every split and system (extra manifests included): error rates and term scores in %."""
    lines = ["| split | system | utterances | WER | CER | B-WER | U-WER | term F1 | term error |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for split, by_system in report.get("results", {}).items():
        for system, result in by_system.items():
            rates = [_pct((result.get(key) or {}).get("rate")) for key, _ in SPLIT_COLUMNS]
            terms = result.get("terms") or {}
            cells = [str(result["utterances"]), *rates, _pct(terms.get("f1")), _pct(terms.get("error_rate"))]
            lines.append(f"| {split} | {system} | " + " | ".join(cells) + " |")
    return lines


def _term_rows(rows: list[dict[str, Any]], header: str) -> list[str]:
    lines = [
        f"| {header} | occurrences | misses before | misses after | error before | error after | wrong renderings after |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        renderings = ", ".join(f"“{w['text'] or '(deleted)'}” ×{w['count']}" for w in r.get("wrong_renderings_after", [])[:3])
        lines.append(
            f"| {r['display']} | {r['occurrences']} | {r['misses_before']} | {r['misses_after']} | "
            f"{_pct(r['error_before'])} | {_pct(r['error_after'])} | {renderings or '–'} |"
        )
    return lines


def _terms_section(report: dict[str, Any]) -> list[str]:
    terms = report.get("terms")
    if not terms or not terms.get("rows"):
        return []
    limit = report.get("report_terms", 20)
    rows = terms["rows"]
    all_improved = sorted((r for r in rows if r["misses_after"] < r["misses_before"]), key=_improvement)
    improved = all_improved[:limit]
    worse = sorted((r for r in rows if r["misses_after"] > r["misses_before"]), key=_improvement, reverse=True)
    lines = [f"## Terms: {terms['before']} → {terms['after']} (on {terms['split']})", ""]
    lines += [f"{len(all_improved)} of {len(rows)} terms improved, {len(worse)} got worse.", ""]
    if improved:
        lines += [f"### The {len(improved)} terms that improved most", "", *_term_rows(improved, "term"), ""]
    if worse:
        lines += ["### Terms that got worse", "", *_term_rows(worse[:MAX_WORSE_TERMS], "term"), ""]
        if len(worse) > MAX_WORSE_TERMS:
            lines += [f"({len(worse) - MAX_WORSE_TERMS} more in report.json)", ""]
    return lines


def _improvement(row: dict[str, Any]) -> tuple[float, int, str]:
    """Sort key: largest drop in term error first, then more occurrences, then the term."""
    return (row["error_after"] - row["error_before"], -row["occurrences"], row["display"])


def _examples_section(report: dict[str, Any]) -> list[str]:
    examples = report.get("examples")
    if not examples or not (examples.get("fixed") or examples.get("still_wrong")):
        return []
    before, after = examples["before"], examples["after"]
    lines = [f"## Examples ({before} → {after}, scoring-normalized text)", ""]
    for kind, title in (("fixed", "Fixed"), ("still_wrong", "Still wrong")):
        if not examples.get(kind):
            continue
        lines += [f"### {title}", ""]
        for ex in examples[kind]:
            lines += [
                f"- `{ex['id']}`",
                f"  - reference: {ex['ref']}",
                f"  - {before}: {ex['before']}",
                f"  - {after}: {ex['after']}",
            ]
        lines.append("")
    return lines


def render_markdown(report: dict[str, Any], plots: list[str]) -> str:
    head = report.get("headline", {})
    lines = [f"# dictune evaluation: {report.get('name', '')}", ""]
    lines.append(f"Base model: `{report.get('base_model')}`; systems: {', '.join(report.get('systems', []))}.")
    for split, info in report.get("splits", {}).items():
        count = info["utterances"]
        lines.append(f"- split `{split}`: {count} utterance{'s' * (count != 1)} ({info.get('kind', 'domain')})")
    prompt = report.get("prompt")
    if prompt:
        lines.append(f"- vocabulary prompt: {prompt['terms_used']} of {prompt['terms_total']} lexicon terms, "
                     f"{prompt['tokens']} tokens ({prompt['rule']})")
    lines += [f"- note: {note}" for note in report.get("notes", [])]
    title = (f"## Headline (domain split `{head.get('domain_split')}`, general split "
             f"`{head.get('general_split')}`; error rates and F1 in %)")
    lines += ["", title, "", headline_table(report), ""]
    lines += [TERM_NOTE, ""]
    comparison = comparison_table(report)
    if comparison:
        lines += ["## Differences against the base model (percentage points, paired bootstrap 95% CI)", ""]
        lines += [*comparison, ""]
    if report.get("new_words"):
        from pipeline.new_words import markdown as new_words_markdown

        lines += new_words_markdown(report["new_words"])
    lines += _terms_section(report)
    lines += _examples_section(report)
    lines += clinical_markdown(report)
    if report.get("results"):
        lines += ["## All splits (error rates and F1 in %)", "", *_splits_table(report), ""]
    if plots:
        lines += ["## Plots", "", *[f"![{Path(p).stem}]({p})" for p in plots], ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- plots


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure drawn by the Agg backend: files only, no pyplot state, no window."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_metrics(report: dict[str, Any], path: Path) -> bool:
    """Grouped bars: one group per error metric, one bar per system."""
    rows = report.get("headline", {}).get("rows", [])
    keys = [k for k, _ in HEADLINE_COLUMNS if k != "term_f1" and any(r.get(k) is not None for r in rows)]
    if not rows or not keys:
        return False
    fig = _figure(1.6 + 1.5 * len(keys), 4)
    ax = fig.subplots()
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(keys))]
        ys = [100 * (row.get(k) or 0.0) for k in keys]
        ax.bar(xs, ys, width, label=row["system"])
    ax.set_xticks(range(len(keys)), [METRIC_LABELS[k] for k in keys])
    ax.set_ylabel("error rate (%)")
    ax.set_title(f"{report.get('name', '')}: error rates by system (lower is better)")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return True


def plot_terms(report: dict[str, Any], path: Path) -> bool:
    """Per-term error before (grey) and after (blue) as a dumbbell chart: improved terms first."""
    terms = report.get("terms") or {}
    rows = _plotted_terms(terms.get("rows", []))
    if not rows:
        return False
    fig = _figure(7.5, 1.2 + 0.28 * len(rows))
    ax = fig.subplots()
    ys = list(range(len(rows)))[::-1]
    before = [100 * r["error_before"] for r in rows]
    after = [100 * r["error_after"] for r in rows]
    ax.hlines(ys, before, after, color="lightgrey", linewidth=2, zorder=1)
    ax.scatter(before, ys, color="grey", label=terms["before"], zorder=2)
    ax.scatter(after, ys, color="tab:blue", label=terms["after"], zorder=3)
    ax.set_yticks(ys, [f"{r['display']} ({r['occurrences']})" for r in rows], fontsize=8)
    ax.set_xlim(-3, 103)
    ax.set_xlabel("term error (%)  [occurrences in brackets]")
    ax.set_title(f"Per-term error, {terms['before']} → {terms['after']} (on {terms['split']})", fontsize=10)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)
    return True


def _plotted_terms(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Up to MAX_PLOTTED_TERMS: the most improved, then the worse, then unchanged by occurrences."""
    changed = sorted((r for r in rows if r["misses_after"] != r["misses_before"]), key=_improvement)
    same = sorted((r for r in rows if r["misses_after"] == r["misses_before"]),
                  key=lambda r: (-r["occurrences"], r["display"]))
    return (changed + same)[:MAX_PLOTTED_TERMS]


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=PLOT_DPI)


# ---------------------------------------------------------------------------------------------- entry


def write_report(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write report.md and the PNG plots into out_dir; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    if plot_metrics(report, out_dir / "metrics.png"):
        plots.append("metrics.png")
    if plot_terms(report, out_dir / "terms.png"):
        plots.append("terms.png")
    atomic_write_text(out_dir / "report.md", render_markdown(report, plots))
    return [out_dir / "report.md", *(out_dir / p for p in plots)]
