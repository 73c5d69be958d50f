"""Data-quality arms over several pools (curve.pools): the same budget of audio from each, and what the
confidence intervals say about them.

Typical pools are three versions of the same recordings: what was said (verbatim), the final reports taken
as if verbatim (raw), and the spans of the final reports the audio supports (verified; segment.verify_sources).

Plan: every fraction's budget is that share of the SMALLEST pool's audio, so every arm trains on the same
hours. Draw k orders each pool by a seeded shuffle of its record ids (pipeline.curve.plan.draw_order): pools
whose pieces share parent recordings draw them alike. Each (arm, fraction, draw) is one point.

Comparison: for each fraction and each arm against the first pool (the reference), the points' per-utterance
error counts on a split are summed over the draws (each utterance is one row holding all draws' errors),
and the utterances are resampled (pipeline.bootstrap, paired): the interval is of the difference of the
corpus-level metric. The verdict says "worse" or "better" only when the whole interval lies on one side of
zero, else "no difference shown". The main arm's steps (each amount against the one before it) are compared
the same way: whether the curve still falls is a verdict from an interval, not from a threshold.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.curve.plan import Subset, draw_order, take_budget
from pipeline.errors import DictuneError
from pipeline.manifest import Record

COMPARED = (("domain", "wer"), ("domain", "b_wer"), ("domain", "term_error"), ("general", "wer"))
BOOTSTRAP_SAMPLES = 2000


def plan_pool_subsets(
    pools: Mapping[str, Sequence[Record]], fractions: Sequence[float], draws: int, seed: int
) -> list[Subset]:
    """Per draw, per pool (in the given order), per fraction: the pool's draw order cut at the budget."""
    if len(pools) < 2 or any(not records for records in pools.values()):
        raise ValueError("pools: at least two, none empty")
    smallest = min(float(sum(r.duration for r in records)) for records in pools.values())
    subsets = []
    for draw in range(draws):
        for arm, records in pools.items():
            order = draw_order(records, seed, draw)
            for fraction in fractions:
                budget = fraction * smallest
                subsets.append(Subset(arm, fraction, draw, budget, take_budget(order, budget)))
    return subsets


def pool_records(pools: Mapping[str, str]) -> dict[str, list[Record]]:
    """{arm: records with absolute audio paths}; a missing or empty manifest is a one-line error."""
    from pipeline.manifest import read_manifest, resolve_audio_path

    out = {}
    for arm, manifest in pools.items():
        path = Path(manifest)
        if not path.is_file():
            raise DictuneError(f"{path}: curve.pools.{arm}: manifest not found; run the stages that write it first")
        records = [r.replace(audio_filepath=str(resolve_audio_path(r, path))) for r in read_manifest(path)]
        if not records:
            raise DictuneError(f"{path}: curve.pools.{arm}: no items")
        if len({r.id for r in records}) != len(records):
            raise DictuneError(f"{path}: curve.pools.{arm}: duplicate ids; give every item its own id")
        out[arm] = records
    return out


def point_hyps(point_dir: Path, split: Any, system: str = "adapted") -> list[str]:
    """The hypotheses a point wrote for a split (run_point's transcripts), in the split's order."""
    from pipeline.manifest import iter_jsonl

    path = point_dir / "transcripts" / system / f"{split.name}.jsonl"
    rows = {row["id"]: row["hyp"] for _, row in iter_jsonl(path)}
    missing = [r.id for r in split.records if r.id not in rows]
    if missing:
        raise DictuneError(f"{path}: {len(missing)} utterances of {split.name} have no transcript")
    return [rows[r.id] for r in split.records]


def main_arm(arms: Sequence[str]) -> str:
    """The arm the curve's sentences lead with: random subsets, or with curve.pools the first pool."""
    return "random" if "random" in arms or not arms else arms[0]


def point_matrices(
    config: Any, splits: list[Any], points: list[dict[str, Any]], point_dirs: Mapping[str, Path], options: Any
) -> dict[tuple[str, float, str], np.ndarray]:
    """{(arm, fraction, split): per-utterance error counts summed over the draws} on the domain and general
    splits: what compare_arms and compare_steps resample."""
    from pipeline.bootstrap import utterance_matrix
    from pipeline.systems import score_all

    wanted = {n for n in (options.domain_split, options.general_split) if n}
    by_name = {s.name: s for s in splits if s.name in wanted}
    matrices: dict[tuple[str, float, str], np.ndarray] = {}
    for p in points:
        directory = point_dirs[p["same_as"] or p["id"]]
        hyps = {"adapted": {n: point_hyps(directory, s) for n, s in by_name.items()}}
        scores = score_all(config, list(by_name.values()), hyps)
        for n in by_name:
            m = utterance_matrix(scores[n]["adapted"])
            key = (p["arm"], p["fraction"], n)
            matrices[key] = matrices[key] + m if key in matrices else m
    return matrices


def _difference(config: Any, a: np.ndarray | None, b: np.ndarray | None, metric: str) -> dict[str, Any] | None:
    if a is None or b is None or (metric != "wer" and not config.lexicon):
        return None
    from pipeline.bootstrap import matrix_bootstrap

    d = matrix_bootstrap(a, b, [metric], BOOTSTRAP_SAMPLES, config.seed)[metric]
    return {**d.to_dict(), "verdict": verdict(d.ci_low, d.ci_high)}


def _draws(points: list[dict[str, Any]], arm: str, fraction: float) -> int:
    return sum(1 for p in points if p["arm"] == arm and p["fraction"] == fraction)


def compare_arms(
    config: Any, points: list[dict[str, Any]], matrices: Mapping[tuple[str, float, str], np.ndarray], options: Any
) -> list[dict[str, Any]]:
    """Each arm against the first pool, per fraction and COMPARED metric, draws pooled (module docstring)."""
    arms = list(dict.fromkeys(p["arm"] for p in points))
    names = {"domain": options.domain_split, "general": options.general_split}
    rows = []
    for fraction in sorted({p["fraction"] for p in points}):
        for arm in arms[1:]:
            for which, metric in COMPARED:
                split = names[which]
                d = _difference(config, matrices.get((arms[0], fraction, split)), matrices.get((arm, fraction, split)), metric)
                if d is not None:
                    rows.append({"fraction": fraction, "arm": arm, "reference": arms[0], "split": split,
                                 "metric": metric, "draws": _draws(points, arm, fraction), **d})  # fmt: skip
    return rows


def compare_steps(
    config: Any, points: list[dict[str, Any]], matrices: Mapping[tuple[str, float, str], np.ndarray], options: Any
) -> list[dict[str, Any]]:
    """The main arm's amounts one after another: each fraction against the one before it (later minus
    earlier) on the curve's term metric and general WER, resampled like compare_arms, and the whole gain: the
    base model (matrices keyed ("base", 0.0, split), when given) against the largest amount. "better" means
    the curve still falls over that step; "no difference shown" that these test splits cannot tell."""
    arm = main_arm(list(dict.fromkeys(p["arm"] for p in points)))
    fractions = sorted({p["fraction"] for p in points if p["arm"] == arm})
    pairs = [((arm, a), (arm, b)) for a, b in itertools.pairwise(fractions)]
    if fractions:  # the whole gain: the base model (its counts keyed ("base", 0.0, split)) to the largest amount
        pairs.append((("base", 0.0), (arm, fractions[-1])))
    rows = []
    for (arm_a, before), (arm_b, after) in pairs:
        for split, metric in ((options.domain_split, config.curve.term_metric), (options.general_split, "wer")):
            d = _difference(config, matrices.get((arm_a, before, split)), matrices.get((arm_b, after, split)), metric)
            if d is not None:
                rows.append({"arm": arm_b, "from": arm_a, "from_fraction": before, "fraction": after, "split": split,
                             "metric": metric, "draws": _draws(points, arm_b, after), **d})  # fmt: skip
    return rows


def verdict(low: float | None, high: float | None) -> str:
    """What the interval of (arm - reference) supports, for an error metric (lower is better)."""
    if low is None or high is None:
        return "not measurable"
    if low > 0:
        return "worse"
    if high < 0:
        return "better"
    return "no difference shown"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _cells(row: dict[str, Any]) -> str:
    """A row's split, metric, both figures and the difference with its interval, as table cells."""
    return (f"{row['split']} | {row['metric']} | {_pct(row['a'])} | {_pct(row['b'])} | {_pct(row['delta'])} "
            f"[{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]")  # fmt: skip


def comparison_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The comparison table and one sentence per arm, each claim backed by its interval."""
    if not rows:
        return []
    lines = ["## Arms at equal audio budgets", "",
             (f"Each arm against **{rows[0]['reference']}**, draws pooled per utterance; 95% paired bootstrap "
             "intervals over utterances. A verdict other than \"no difference shown\" needs the whole "
             "interval on one side of zero."), "",
             "| budget | arm | split | metric | reference | arm | difference [95% CI] | draws | verdict |",
             "|---:|---|---|---|---:|---:|---|---:|---|"]  # fmt: skip
    lines += [f"| {100 * r['fraction']:g}% | {r['arm']} | {_cells(r)} | {r['draws']} | {r['verdict']} |" for r in rows]
    lines.append("")
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        shown = [f"{r['metric']} on {r['split']} {r['verdict']}" for r in mine if r["verdict"] in ("worse", "better")]
        against = mine[0]["reference"]
        lines.append(f"- {arm} against {against}: " + ("; ".join(shown) if shown else
                     "no difference shown on any compared metric") + ".")  # fmt: skip
    return lines + [""]


def steps_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """compare_steps' rows: each amount of the main arm against the one before it."""
    if not rows:
        return []
    lines = ["## Steps of the curve", "",
             (f"Each amount of **{rows[0]['arm']}** against the one before it, and the largest against the base "
              "model (later minus earlier), draws pooled per utterance; 95% paired bootstrap intervals over "
              "utterances."), "",
             "| from | to | split | metric | earlier | later | difference [95% CI] | verdict |",
             "|---:|---:|---|---|---:|---:|---|---|"]  # fmt: skip
    start = lambda r: "base model" if r.get("from") == "base" else f"{100 * r['from_fraction']:g}%"
    lines += [f"| {start(r)} | {100 * r['fraction']:g}% | {_cells(r)} | {r['verdict']} |" for r in rows]
    return lines + [""]
