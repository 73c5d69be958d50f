"""The learning curve's report: curve.json numbers, sentences a user can act on, curve.md and curve.png.

    point_metrics(scores, domain, general, system) -> dict      one system's numbers from evaluate's Scores
    build_curve(meta, baselines, points, wall_seconds) -> dict  what curve.json holds
    write_curve(curve, out_dir) -> [curve.md, curve.png]

Keys of curve.json, besides `meta` from pipeline/curve/run.py (name, base_model, train_manifest,
total_items, total_hours, term_metric, domain_split, general_split, splits, fractions, seeds, train,
quality, prompt, notes):
    baselines{system: metrics}, points[{id, arm, fraction, draw, train_seed, items, hours, budget_hours,
    budget_met, same_as, metrics, train_seconds, eval_seconds, train}], summary[{arm, fraction, n, hours,
    items, budget_met, term{mean, min, max}, general_wer{mean, min, max}}], sentences[...], wall_seconds.
metrics: {wer, b_wer, u_wer, term_error, term_f1, general_wer} as fractions (0.25 = 25%), None when
undefined. The spread across seeds is the min..max of the draws. No transcript text is in any of it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline.curve.pools import comparison_markdown, main_arm, steps_markdown
from pipeline.files import atomic_write_text

METRIC_LABELS = {
    "b_wer": "term error (B-WER)",
    "term_error": "term error (1 − term recall)",
    "wer": "domain WER",
    "general_wer": "general WER",
}
METRIC_NOTES = {
    "b_wer": "Term error here is B-WER: errors on the reference words inside lexicon terms over those words "
    "(Le et al. 2021); curve.json also holds term_error (1 − term recall, the evaluate report's term error).",
    "term_error": "Term error = 1 − term recall over the lexicon-term occurrences (as in the evaluate report).",
    "wer": "Domain WER: word error rate on the domain test split.",
}
ARM_LABELS = {"random": "random subsets", "clean": "worst alignment scores removed"}
ARM_COLORS = {"random": "tab:blue", "clean": "tab:green"}
SAME = 0.005  # differences under half a percentage point count as "about the same"
MINUTES_BELOW_HOURS = 2.0  # training amounts are shown in minutes when all data is under this many hours
PLOT_DPI = 110  # dots per inch of curve.png
LOG_X_RATIO = 4.0  # the x axis is logarithmic when the largest amount is this many times the smallest


# ---------------------------------------------------------------------------------------------- numbers


def point_metrics(scores: dict[str, dict[str, Any]], domain: str, general: str | None, system: str) -> dict:
    """{wer, b_wer, u_wer, term_error, term_f1, general_wer} of `system` from score_all's Scores."""
    d = scores[domain][system]
    g = scores.get(general or "", {}).get(system)
    return {
        "wer": d.wer.rate,
        "b_wer": d.b_wer.rate if d.b_wer is not None else None,
        "u_wer": d.u_wer.rate if d.u_wer is not None else None,
        "term_error": d.terms.error_rate if d.terms is not None else None,
        "term_f1": d.terms.f1 if d.terms is not None else None,
        "general_wer": g.wer.rate if g is not None else None,
    }


def _spread(values: list[float | None]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def summarize(points: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per (arm, fraction): mean hours and items, and the term metric / general WER over draws."""
    rows = []
    for arm in dict.fromkeys(p["arm"] for p in points):
        for fraction in sorted({p["fraction"] for p in points if p["arm"] == arm}):
            group = [p for p in points if p["arm"] == arm and p["fraction"] == fraction]
            rows.append({
                "arm": arm, "fraction": fraction, "n": len(group),
                "hours": sum(p["hours"] for p in group) / len(group),
                "items": sum(p["items"] for p in group) / len(group),
                "budget_met": all(p["budget_met"] for p in group),
                "term": _spread([p["metrics"][metric] for p in group]),
                "general_wer": _spread([p["metrics"]["general_wer"] for p in group]),
            })  # fmt: skip
    return rows


def build_curve(
    meta: dict[str, Any],
    baselines: dict[str, dict],
    points: list[dict[str, Any]],
    wall_seconds: float,
    comparisons: list[dict[str, Any]] | None = None,
    steps: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """curve.json: meta, baselines, points, the per-(arm, fraction) summary, each arm against the first and
    the main arm's steps (pipeline.curve.pools.compare_arms / compare_steps: paired bootstrap intervals),
    and the sentences."""
    curve = dict(meta, baselines=baselines, points=points, comparisons=comparisons or [], steps=steps or [])
    curve["summary"] = summarize(points, meta["term_metric"])
    curve["wall_seconds"] = round(wall_seconds, 1)
    curve["sentences"] = sentences(curve)
    return curve


# ---------------------------------------------------------------------------------------------- sentences


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _unit(curve: dict[str, Any]) -> tuple[str, float]:
    """('minutes', 60) or ('hours', 1): the unit of training amounts and its factor from hours."""
    return ("minutes", 60.0) if curve["total_hours"] < MINUTES_BELOW_HOURS else ("hours", 1.0)


def _amount(curve: dict[str, Any], hours: float) -> str:
    unit, factor = _unit(curve)
    value = hours * factor
    return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"


def _move(before: float, after: float) -> str:
    if after < before - SAME:
        return f"falls from {_pct(before)} to {_pct(after)}"
    if after > before + SAME:
        return f"rises from {_pct(before)} to {_pct(after)}"
    return (
        f"stays at about {_pct(before)}"
        if _pct(before) == _pct(after)
        else f"stays about the same ({_pct(before)}, then {_pct(after)})"
    )


def _seeds(row: dict[str, Any]) -> str:
    term = row["term"]
    if row["n"] == 1:
        return "one draw"
    return f"mean of {row['n']} draws, {_pct(term['min'])}–{_pct(term['max'])}"


def sentences(curve: dict[str, Any]) -> list[str]:
    """Plain statements generated from the numbers: the gain, how fast it comes, prompt, slope, quality."""
    metric, label = curve["term_metric"], METRIC_LABELS[curve["term_metric"]]
    arms = list(dict.fromkeys(r["arm"] for r in curve["summary"]))
    main = main_arm(arms)
    rows = [r for r in curve["summary"] if r["arm"] == main and r["term"] is not None]
    base = curve["baselines"].get("base", {}).get(metric)
    if not rows or base is None:
        return [f"No {label} could be computed (is the lexicon empty, or are no terms in the test split?)."]
    last = rows[-1]
    mean = last["term"]["mean"]
    out = [
        (
            f"With {_amount(curve, last['hours'])} of dictation ({last['items']:.0f} utterances), {label} "
            f"{_move(base, mean)} ({_seeds(last)}{_against_base(curve, curve['domain_split'], metric)})."
        )
    ]
    gain = base - mean
    half = next((r for r in rows if base - r["term"]["mean"] >= gain / 2), None)
    if gain > SAME and half is not None and half is not last:
        out.append(
            f"Half of that gain already comes with {_amount(curve, half['hours'])} "
            f"({label} {_pct(half['term']['mean'])})."
        )
    out += _prompt_sentence(curve, rows, label)
    out += _slope_sentence(curve, rows)
    out += _quality_sentence(curve, label)
    general = curve["baselines"].get("base", {}).get("general_wer")
    if general is not None and last["general_wer"] is not None:
        out.append(
            f"General WER (plain English, {curve['general_split']}) {_move(general, last['general_wer']['mean'])}"
            f" at {_amount(curve, last['hours'])}{_against_base(curve, curve['general_split'], 'wer', ': ')}."
        )
    return out


def _against_base(curve: dict[str, Any], split: str, metric: str, lead: str = "; ") -> str:
    """The largest amount against the base model with its interval and verdict (compare_steps' gain row)."""
    row = next((r for r in curve.get("steps", []) if r.get("from") == "base" and r["split"] == split
                and r["metric"] == metric and r["ci_low"] is not None), None)  # fmt: skip
    if row is None:
        return ""
    verdict = {"better": "lower", "worse": "higher"}.get(row["verdict"], row["verdict"])
    return (f"{lead}{100 * row['delta']:+.1f} pt [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}] against "
            f"the base model, {verdict}")  # fmt: skip


def _prompt_sentence(curve: dict[str, Any], rows: list[dict[str, Any]], label: str) -> list[str]:
    prompt = curve["baselines"].get("base+prompt", {}).get(curve["term_metric"])
    if prompt is None:
        return []
    beats = next((r for r in rows if r["term"]["mean"] < prompt - SAME), None)
    if beats is None:
        return [f"The vocabulary prompt alone gives {_pct(prompt)}; no training point beats it."]
    return [
        (
            f"The vocabulary prompt alone gives {_pct(prompt)}; training beats it from "
            f"{_amount(curve, beats['hours'])} on."
        )
    ]


def _slope_sentence(curve: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The last step of the main arm, with a verdict only from its interval (pipeline.curve.pools.compare_steps)."""
    if len(rows) < 2:
        return []
    before, last = rows[-2], rows[-1]
    span = f"from {_amount(curve, before['hours'])} to {_amount(curve, last['hours'])}"
    label = METRIC_LABELS[curve["term_metric"]]
    step = next((r for r in curve.get("steps", []) if r.get("from", r["arm"]) == r["arm"]
                 and (r["from_fraction"], r["fraction"], r["split"], r["metric"])
                 == (before["fraction"], last["fraction"], curve["domain_split"], curve["term_metric"])
                 and r["ci_low"] is not None), None)  # fmt: skip
    if step is None:
        move = last["term"]["mean"] - before["term"]["mean"]
        return [(f"Over the last step, {span}, {label} moves {100 * move:+.1f} points; no interval was computed, "
                 "so whether the curve still falls is not shown.")]  # fmt: skip
    interval = (f"{_pct(step['a'])} to {_pct(step['b'])}, {100 * step['delta']:+.1f} pt [{100 * step['ci_low']:+.1f}, "
                f"{100 * step['ci_high']:+.1f}] (draws pooled, 95% paired bootstrap over utterances)")  # fmt: skip
    if step["verdict"] == "better":
        return [f"The curve is still falling {span}: {label} {interval}; more dictation of this kind should help."]
    if step["verdict"] == "worse":
        return [f"The curve rises {span}: {label} {interval}; more of the same dictation did not help over that step."]
    return [(f"Over the last step, {span}, {label} goes {interval}: no difference shown, so this test split "
             "cannot tell whether more of the same dictation still helps.")]  # fmt: skip


def _budget(curve: dict[str, Any], row: dict[str, Any]) -> float:
    """The audio budget (hours) of an arm comparison's fraction."""
    return next(p["budget_hours"] for p in curve["points"] if p["fraction"] == row["fraction"])


def _quality_sentence(curve: dict[str, Any], label: str) -> list[str]:
    """Clean against random at every equal budget, on the curve's metric: the difference with its paired
    bootstrap interval, and a verdict only where the interval lies on one side of zero."""
    quality = curve.get("quality")
    rows = [r for r in curve.get("comparisons", []) if r["metric"] == curve["term_metric"]
            and r["split"] == curve["domain_split"]]  # fmt: skip
    if curve.get("pools") and rows:
        return [
            f"{r['arm'].capitalize()} against {r['reference']} at the same {_amount(curve, _budget(curve, r))} "
            f"(draws pooled, 95% paired bootstrap over utterances): {label} {_pct(r['b'])} against {_pct(r['a'])}, "
            f"difference {100 * r['delta']:+.1f} pt [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]: {r['verdict']}."
            for r in rows if r["delta"] is not None and r["ci_low"] is not None
        ]  # fmt: skip
    rows = [r for r in rows if r["arm"] == "clean"]
    if not quality or not rows:
        return []
    removed = (
        f"Removing the worst {100 * quality['drop_fraction']:.0f}% of alignment-scored segments "
        f"({quality['removed_items']} of {quality['scored_items']})"
    )
    details = "; ".join(
        f"{100 * r['fraction']:g}% budget: {_pct(r['b'])} against {_pct(r['a'])}, difference "
        f"{100 * r['delta']:+.1f} pt [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]: {r['verdict']}"
        for r in rows if r["delta"] is not None and r["ci_low"] is not None
    )  # fmt: skip
    return [(f"{removed}, with the same audio budget, gives {label} (clean against random; draws pooled, 95% "
            f"paired bootstrap over utterances) {details}.")]  # fmt: skip


# ---------------------------------------------------------------------------------------------- markdown


def _cell(spread: dict[str, float] | None, n: int) -> str:
    if spread is None:
        return "n/a"
    if n == 1:
        return _pct(spread["mean"])
    return f"{_pct(spread['mean'])} ({100 * spread['min']:.1f}–{100 * spread['max']:.1f})"


def _table(curve: dict[str, Any]) -> list[str]:
    unit, factor = _unit(curve)
    metric = curve["term_metric"]
    lines = [
        f"| training data | {unit} | utterances | draws | {METRIC_LABELS[metric]} | general WER |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, values in curve["baselines"].items():
        title = {"base": "base model", "base+prompt": "base + vocabulary prompt"}.get(name, name)
        lines.append(
            f"| {title} | 0 | 0 | – | {_pct(values.get(metric))} | {_pct(values.get('general_wer'))} |"
        )
    for row in curve["summary"]:
        star = "" if row["budget_met"] else " *"
        lines.append(
            f"| {row['arm']} {100 * row['fraction']:g}%{star} | {row['hours'] * factor:.1f} | {row['items']:.0f} | "
            f"{row['n']} | {_cell(row['term'], row['n'])} | {_cell(row['general_wer'], row['n'])} |"
        )
    return lines


def render_markdown(curve: dict[str, Any], plot: str | None) -> str:
    t, q = curve["train"], curve.get("quality")
    lines = [f"# Learning curve: {curve['name']}", ""]
    lines += [f"- {s}" for s in curve["sentences"]] + [""]
    if plot:
        lines += [f"![learning curve]({plot})", ""]
    lines += _table(curve) + [""]
    lines.append(
        f"Mean over the draws, with the range (min–max) in brackets. {METRIC_LABELS[curve['term_metric']]} "
        f"on {curve['domain_split']} ({curve['splits'].get(curve['domain_split'])} utterances), general WER "
        f"on {curve['general_split']}. "
        + (f"Each arm draws its own pool ({', '.join(f'{k}: {v}' for k, v in curve['pools'].items())}) to the same "
           "budget, a share of the smallest pool's audio; "
           if curve.get("pools") else
           f"Nested random subsets of {curve['train_manifest']} ({curve['total_items']} utterances, "
           f"{_amount(curve, curve['total_hours'])}); ")
        + f"the same dev and test sets at every point. {METRIC_NOTES[curve['term_metric']]}"
    )
    if any(not r["budget_met"] for r in curve["summary"]):
        lines.append("\\* the clean data held less audio than this budget: all of it was used.")
    if q:
        lines.append(
            f"Quality arm: the {q['removed_items']} of {q['scored_items']} items with an alignment "
            f"score ({q['key']} >= {q['threshold']:.3f}, {_amount(curve, q['removed_hours'])}) removed, "
            "the same audio budget filled from the rest in the same random order."
        )
    lines += [
        "",
        (
            f"Training at every point: {t['mode']} on the {t['adapt']} ({t['max_steps']} steps, batch "
            f"{t['batch_size']}, learning rate {t['learning_rate']:g}, encoder cache {t['cache_encoder_outputs']}); "
            f"each point is the model after the last step (no checkpoint picked on dev); base model "
            f"{curve['base_model']}."
        ),
        _timing(curve),
    ]
    lines += ["", *comparison_markdown(curve.get("comparisons", [])), *steps_markdown(curve.get("steps", []))]
    if curve.get("notes"):
        lines += ["", "Notes:"] + [f"- {n}" for n in curve["notes"]]
    return "\n".join(lines) + "\n"


def _timing(curve: dict[str, Any]) -> str:
    points = curve["points"]
    trained = [p for p in points if p["same_as"] is None]
    reused = sum(p.get("reused", False) for p in trained)
    text = (
        f"Wall time {curve['wall_seconds'] / 60:.1f} min; the {len(trained)} trained points took "
        f"{sum(p['train_seconds'] for p in points) / 60:.1f} min of training and "
        f"{sum(p['eval_seconds'] for p in points) / 60:.1f} min of scoring"
    )
    return text + (f" ({reused} of them computed by an earlier run)." if reused else ".")


# ---------------------------------------------------------------------------------------------- plot


def plot_curve(curve: dict[str, Any], path: Path) -> bool:
    """Term metric and general WER against training amount: draws as dots, mean line, min–max band,
    the base model and the vocabulary prompt as horizontal lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    if not curve["points"]:
        return False
    unit, factor = _unit(curve)
    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    # ticks at the random arm's amounts (the clean arm's lie within a few % of them: labelled both, they overlap)
    ticked = [r for r in curve["summary"] if r["arm"] == "random"] or curve["summary"]
    amounts = sorted({round(r["hours"] * factor, 1) for r in ticked})
    log_x = min(amounts) > 0 and max(amounts) / min(amounts) >= LOG_X_RATIO
    for ax, key in zip(axes, (curve["term_metric"], "general_wer")):
        _plot_panel(ax, curve, key, factor)
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(amounts, [f"{a:g}" for a in amounts], fontsize=8)
        ax.set_xlabel(f"training audio ({unit})")
        ax.set_ylabel(f"{METRIC_LABELS[key]} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{curve['name']}: error against training data (lower is better)")
    fig.tight_layout()
    from pipeline.files import atomic_open

    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=PLOT_DPI)
    return True


def _plot_panel(ax: Any, curve: dict[str, Any], key: str, factor: float) -> None:
    styles = {
        "base": ("grey", "--", "base model"),
        "base+prompt": ("tab:orange", ":", "base + vocabulary prompt"),
    }
    for name, values in curve["baselines"].items():
        if values.get(key) is not None and name in styles:
            color, style, label = styles[name]
            ax.axhline(100 * values[key], color=color, linestyle=style, label=label)
    for number, arm in enumerate(dict.fromkeys(p["arm"] for p in curve["points"])):
        points = [p for p in curve["points"] if p["arm"] == arm and p["metrics"].get(key) is not None]
        if not points:
            continue
        color = ARM_COLORS.get(arm, f"C{number}")
        ax.scatter(
            [p["hours"] * factor for p in points],
            [100 * p["metrics"][key] for p in points],
            color=color,
            alpha=0.45,
            s=18,
        )
        groups = sorted({p["fraction"] for p in points})
        xs, means, lows, highs = [], [], [], []
        for fraction in groups:
            group = [p for p in points if p["fraction"] == fraction]
            values = [100 * p["metrics"][key] for p in group]
            xs.append(sum(p["hours"] for p in group) / len(group) * factor)
            means.append(sum(values) / len(values))
            lows.append(min(values))
            highs.append(max(values))
        ax.plot(xs, means, color=color, marker="o", label=ARM_LABELS.get(arm, arm))
        if any(not math.isclose(lo, hi) for lo, hi in zip(lows, highs)):
            ax.fill_between(xs, lows, highs, color=color, alpha=0.15, linewidth=0)


def write_curve(curve: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write curve.md and curve.png into out_dir; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plotted = plot_curve(curve, out_dir / "curve.png")
    atomic_write_text(out_dir / "curve.md", render_markdown(curve, "curve.png" if plotted else None))
    return [out_dir / "curve.md", *([out_dir / "curve.png"] if plotted else [])]
