"""Training subsets of the learning curve: nested random draws, and the data-quality arm.

Budget: seconds of training audio. The point at fraction f trains on f x (all training audio).

Random arm, draw k: the training records (sorted by id, so the manifest's line order does not matter)
are shuffled once with the seed (config.seed, k); the subset at fraction f is the longest prefix of that
order whose audio fits in the budget (at least one record). Budgets grow with f and every subset is a
prefix of the same order, so the subsets of one draw are nested (10% inside 25% inside 50% ...), the same
on every run, and different from draw to draw.

Quality arm ("clean"): a record's alignment score is `alignment_wer` from the segment stage (the base
model's WER against the piece's text; high means the text and the audio disagree). Of the records that
have one, the worst `ceil(quality_drop_fraction x scored)` (highest alignment_wer first, ties by id) are
removed; records without a score count as clean. The clean subset at fraction f is the longest prefix of
the same draw's order, removed records skipped, that fits the same budget: the same hours of cleaner
data. When the clean records hold less audio than the budget (f near 1), the subset is every clean
record and `budget_met` is false: its point then shows "all clean data" at its own, smaller, hours.

A clean subset holding exactly the records of another point of the same draw (no removed record fell
inside the budget, or two budgets both exceed the clean pool) is not trained twice: `same_as` names the
point whose result it shares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.manifest import Record

ALIGNMENT_KEY = "alignment_wer"  # extra key written by the segment stage
BUDGET_TOLERANCE_SECONDS = 1e-6  # float slack when comparing summed durations with a budget
ARMS = ("random", "clean")


@dataclass(frozen=True)
class Subset:
    arm: str  # random | clean
    fraction: float  # share of all training audio given as budget
    draw: int  # random draw index, 0 .. curve.seeds-1
    budget_seconds: float  # fraction x all training audio
    records: tuple[Record, ...]  # in draw order
    budget_met: bool = True  # False: the clean pool held less audio than the budget (all of it is used)
    same_as: str | None = None  # id of an earlier point with exactly these records (not trained again)

    @property
    def id(self) -> str:
        return point_id(self.arm, self.fraction, self.draw)

    @property
    def seconds(self) -> float:
        return float(sum(r.duration for r in self.records))

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.records)


@dataclass(frozen=True)
class QualitySplit:
    clean: tuple[Record, ...]  # records kept (unscored ones included)
    removed: tuple[Record, ...]  # the worst-scored records, worst first
    scored: int  # records with an alignment score
    threshold: float | None  # lowest alignment_wer among the removed (None when nothing is removed)


def point_id(arm: str, fraction: float, draw: int) -> str:
    return f"{arm}-f{fraction:g}-s{draw}"


def alignment_score(record: Record) -> float | None:
    """The record's alignment_wer as a float, or None when it has none (or not a finite number)."""
    value = record.extra.get(ALIGNMENT_KEY)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def quality_split(records: Sequence[Record], drop_fraction: float) -> QualitySplit:
    """Remove the worst `ceil(drop_fraction x scored)` records by alignment score; unscored ones stay."""
    scored = [(score, r.id, r) for r in records if (score := alignment_score(r)) is not None]
    scored.sort(key=lambda t: (-t[0], t[1]))
    count = math.ceil(len(scored) * drop_fraction - 1e-9) if scored else 0
    removed = tuple(r for _, _, r in scored[:count])
    gone = {r.id for r in removed}
    threshold = scored[count - 1][0] if count else None
    return QualitySplit(tuple(r for r in records if r.id not in gone), removed, len(scored), threshold)


def draw_order(records: Sequence[Record], seed: int, draw: int) -> list[Record]:
    """The records in the random order of draw `draw` (independent of the input order)."""
    ordered = sorted(records, key=lambda r: r.id)
    rng = np.random.default_rng([seed, draw])
    return [ordered[i] for i in rng.permutation(len(ordered))]


def take_budget(order: Sequence[Record], budget_seconds: float) -> tuple[Record, ...]:
    """The longest prefix of `order` whose durations sum to at most the budget (at least one record)."""
    total, count = 0.0, 0
    for record in order:
        if total + record.duration > budget_seconds + BUDGET_TOLERANCE_SECONDS:
            break
        total += record.duration
        count += 1
    return tuple(order[: max(count, 1 if order else 0)])


def plan_subsets(
    records: Sequence[Record],
    fractions: Sequence[float],
    draws: int,
    seed: int,
    quality: QualitySplit | None = None,
) -> list[Subset]:
    """Every point's subset: per draw, the random arm at each fraction, then the clean arm when given."""
    if len({r.id for r in records}) != len(records):
        raise ValueError("record ids must be unique")
    total = float(sum(r.duration for r in records))
    gone = {r.id for r in quality.removed} if quality else set()
    clean_total = total - sum(r.duration for r in quality.removed) if quality else total
    subsets: list[Subset] = []
    for draw in range(draws):
        order = draw_order(records, seed, draw)
        clean_order = [r for r in order if r.id not in gone]
        seen: dict[frozenset[str], str] = {}
        for arm in ARMS if quality else ARMS[:1]:
            for fraction in fractions:
                budget = fraction * total
                if arm == "random":
                    chosen, met = take_budget(order, budget), True
                else:
                    chosen = take_budget(clean_order, budget)
                    met = clean_total >= budget - BUDGET_TOLERANCE_SECONDS
                subset = Subset(arm, fraction, draw, budget, chosen, met)
                same = seen.setdefault(subset.ids, subset.id)
                subsets.append(
                    subset if same == subset.id else Subset(arm, fraction, draw, budget, chosen, met, same)
                )
    return subsets
