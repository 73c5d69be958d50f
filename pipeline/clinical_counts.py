"""Clinical errors counted: one error of one utterance, and the tallies per kind, report and corpus.

pipeline/clinical.py finds the errors of an utterance (its docstring has the rules); they are counted
here. Per report: utterances cut from one dictation carry its id (the segment stage's `parent_id`) and
are summed into one report; without ids each utterance is its own report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("negation", "laterality", "measurement")  # the report's columns; measurement = number+unit+level


@dataclass(frozen=True)
class ClinicalError:
    """One clinical error in one utterance."""

    kind: str  # negation | laterality | number | unit | level
    change: str  # reference side -> hypothesis side, e.g. "no -> (none)", "left -> right", "5 mm -> 5 cm"
    ref: str  # reference snippet around the error (scoring form)
    hyp: str  # hypothesis snippet at the aligned position

    @property
    def group(self) -> str:
        """The report column: negation, laterality or measurement (number, unit, level)."""
        return self.kind if self.kind in ("negation", "laterality") else "measurement"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "change": self.change, "ref": self.ref, "hyp": self.hyp}


@dataclass(frozen=True)
class ClinicalCounts:
    negation: int = 0
    laterality: int = 0
    number: int = 0  # a value changed, dropped or added
    unit: int = 0  # the same value with another unit
    level: int = 0  # a vertebral level changed, dropped or added

    @property
    def measurement(self) -> int:
        return self.number + self.unit + self.level

    @property
    def total(self) -> int:
        return self.negation + self.laterality + self.measurement

    def __add__(self, other: ClinicalCounts) -> ClinicalCounts:
        return ClinicalCounts(*(getattr(self, k) + getattr(other, k) for k in _COUNT_FIELDS))

    def to_dict(self) -> dict[str, int]:
        return {**{k: getattr(self, k) for k in _COUNT_FIELDS}, "measurement": self.measurement,
                "total": self.total}  # fmt: skip


_COUNT_FIELDS = ("negation", "laterality", "number", "unit", "level")


def count(errors: Sequence[ClinicalError]) -> ClinicalCounts:
    tally = {k: sum(e.kind == k for e in errors) for k in _COUNT_FIELDS}
    return ClinicalCounts(**tally)


@dataclass(frozen=True)
class ReportCounts:
    """One report (a dictation, or one utterance when there are no report ids)."""

    report: str  # its id
    utterances: int
    counts: ClinicalCounts

    def to_dict(self) -> dict[str, Any]:
        return {"report": self.report, "utterances": self.utterances, **self.counts.to_dict()}


@dataclass(frozen=True)
class ClinicalScores:
    """Clinical errors of one system on a list of utterances."""

    counts: ClinicalCounts
    utterances: int
    utterances_with_error: int
    reports: int
    reports_with_error: int
    grouped: bool  # reports from report ids; False: each utterance is its own report
    per_report: tuple[ReportCounts, ...] = ()

    def per_100_utterances(self, kind: str = "total") -> float | None:
        value = getattr(self.counts, kind)
        return 100 * value / self.utterances if self.utterances else None

    @property
    def utterance_share(self) -> float | None:
        return self.utterances_with_error / self.utterances if self.utterances else None

    @property
    def report_share(self) -> float | None:
        return self.reports_with_error / self.reports if self.reports else None

    def to_dict(self) -> dict[str, Any]:
        out = {**self.counts.to_dict(), "utterances": self.utterances,
               "utterances_with_error": self.utterances_with_error, "utterance_share": self.utterance_share,
               "reports": self.reports, "reports_with_error": self.reports_with_error,
               "report_share": self.report_share, "grouped_by_report_id": self.grouped,
               "per_100_utterances": {k: self.per_100_utterances(k) for k in (*KINDS, "total")}}  # fmt: skip
        if self.grouped:
            out["per_report"] = [r.to_dict() for r in self.per_report]
        return out


def aggregate(
    per_utterance: Sequence[Sequence[ClinicalError]], groups: Sequence[str] | None
) -> ClinicalScores:
    """Corpus counts; `groups` gives each utterance's report id (None: each utterance is a report)."""
    ids = list(groups) if groups is not None else [str(k) for k in range(len(per_utterance))]
    if len(ids) != len(per_utterance):
        raise ValueError(f"{len(ids)} report ids for {len(per_utterance)} utterances")
    reports: dict[str, tuple[int, ClinicalCounts]] = {}
    total, with_error = ClinicalCounts(), 0
    for report, errors in zip(ids, per_utterance):
        counts = count(errors)
        total, with_error = total + counts, with_error + (counts.total > 0)
        n, so_far = reports.get(report, (0, ClinicalCounts()))
        reports[report] = (n + 1, so_far + counts)
    rows = tuple(ReportCounts(r, n, c) for r, (n, c) in reports.items())
    return ClinicalScores(total, len(ids), with_error, len(rows), sum(r.counts.total > 0 for r in rows),
                          groups is not None, rows)  # fmt: skip
