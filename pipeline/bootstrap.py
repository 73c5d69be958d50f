"""Paired bootstrap confidence intervals for the difference of two systems scored by pipeline.metrics.score.

Each utterance (or, with by_report, each report: Scores.groups) becomes one row of counts (word, char,
biased, unbiased and term counts, clinical error counts); a resample is a multinomial weighting of the rows,
the same for both systems, and a metric is its summed numerator over its summed denominator, as in
pipeline.metrics (corpus-level, never a mean of per-utterance rates). The interval is the central
CONFIDENCE share of the resampled differences metric(b) - metric(a); a metric undefined in a resample
(zero denominator) is left out of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipeline.clinical_counts import count as count_clinical
from pipeline.metrics import Scores, UtteranceScore

CONFIDENCE = 0.95  # bootstrap interval coverage

# metric -> (numerator, denominator) as functions of the per-utterance count matrix columns
_COLUMNS = ("w_err", "w_ref", "c_err", "c_ref", "b_err", "b_ref", "u_err", "u_ref", "t_ref", "t_hyp", "t_hit",
            "n", "neg", "lat", "meas", "u_any", "r_n", "r_any")  # fmt: skip
METRICS: dict[str, tuple[Callable, Callable]] = {
    "wer": (lambda c: c["w_err"], lambda c: c["w_ref"]),
    "cer": (lambda c: c["c_err"], lambda c: c["c_ref"]),
    "b_wer": (lambda c: c["b_err"], lambda c: c["b_ref"]),
    "u_wer": (lambda c: c["u_err"], lambda c: c["u_ref"]),
    "term_error": (lambda c: c["t_ref"] - c["t_hit"], lambda c: c["t_ref"]),
    "term_recall": (lambda c: c["t_hit"], lambda c: c["t_ref"]),
    "term_precision": (lambda c: c["t_hit"], lambda c: c["t_hyp"]),
    "term_f1": (lambda c: 2 * c["t_hit"], lambda c: c["t_ref"] + c["t_hyp"]),
}
DEFAULT_METRICS = tuple(METRICS)  # compared when no metrics are named (with a lexicon; else wer, cer)
CLINICAL_METRICS: dict[str, tuple[Callable, Callable]] = {  # per utterance (x 100: per 100 utterances)
    "clinical_errors": (lambda c: c["neg"] + c["lat"] + c["meas"], lambda c: c["n"]),
    "negation_errors": (lambda c: c["neg"], lambda c: c["n"]),
    "laterality_errors": (lambda c: c["lat"], lambda c: c["n"]),
    "measurement_errors": (lambda c: c["meas"], lambda c: c["n"]),
    "clinical_utterance_share": (lambda c: c["u_any"], lambda c: c["n"]),  # utterances with >= 1 error
    "clinical_report_share": (lambda c: c["r_any"], lambda c: c["r_n"]),  # reports with >= 1 error
}
METRICS |= CLINICAL_METRICS


@dataclass(frozen=True)
class Difference:
    """System B minus system A on one metric, with a paired bootstrap confidence interval."""

    metric: str
    a: float | None
    b: float | None
    delta: float | None  # b - a
    ci_low: float | None
    ci_high: float | None
    confidence: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def utterance_matrix(scores: Scores) -> np.ndarray:
    """One row of counts per utterance of `scores` (rows of several runs on the same utterances can be summed:
    a resample then keeps each utterance's runs together)."""
    return _matrix(scores.per_utterance)


def _matrix(per_utt: Sequence[UtteranceScore]) -> np.ndarray:
    rows = []
    for u in per_utt:
        c = count_clinical(u.clinical)
        rows.append((u.words.errors, u.words.ref_count, u.chars.errors, u.chars.ref_count, u.biased.errors,
                     u.biased.ref_count, u.unbiased.errors, u.unbiased.ref_count, u.term_ref, u.term_hyp,
                     u.term_hits, 1, c.negation, c.laterality, c.measurement, c.total > 0, 1, c.total > 0))  # fmt: skip
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(_COLUMNS))


def by_group(matrix: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """One row per group (in first-seen order): the sums of its rows, so that a resample draws a group's rows
    together (a report's utterances; one sentence read by several voices)."""
    index = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    out = np.zeros((len(index), matrix.shape[1]))
    np.add.at(out, np.asarray([index[g] for g in groups], dtype=np.intp), matrix)
    return out


def _by_report(matrix: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """One row per report: the sums of its utterances' rows; r_n = 1, r_any = 1 when it has an error."""
    out = by_group(matrix, groups)
    col = {c: k for k, c in enumerate(_COLUMNS)}
    out[:, col["r_n"]] = 1
    out[:, col["r_any"]] = out[:, [col["neg"], col["lat"], col["meas"]]].sum(axis=1) > 0
    return out


def metric_value(matrix: np.ndarray, name: str) -> float | None:
    """A metric of a count matrix's rows taken together (None when its denominator is zero)."""
    return _none(_metric(matrix.sum(axis=0), name))


def _metric(totals: np.ndarray, name: str) -> np.ndarray:
    cols = {c: totals[..., k] for k, c in enumerate(_COLUMNS)}
    num, den = (f(cols) for f in METRICS[name])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def paired_bootstrap(
    a: Scores,
    b: Scores,
    samples: int,
    seed: int,
    metrics: Sequence[str] | None = None,
    by_report: bool = False,
) -> dict[str, Difference]:
    """Resample utterances with replacement (the same draw for both systems) `samples` times and
    report the central CONFIDENCE interval of metric(b) - metric(a), per metric. With `by_report`,
    resample whole reports (a.groups) instead, each with all its utterances."""
    if len(a.per_utterance) != len(b.per_utterance) or any(
        x.ref != y.ref for x, y in zip(a.per_utterance, b.per_utterance)
    ):
        raise ValueError(
            "paired bootstrap needs both systems scored on the same references, in the same order"
        )
    names = list(metrics or (DEFAULT_METRICS if a.terms is not None else ("wer", "cer")))
    ma, mb = _matrix(a.per_utterance), _matrix(b.per_utterance)
    if by_report and a.groups is not None:
        if b.groups != a.groups:
            raise ValueError("paired bootstrap by report needs both systems scored with the same report ids")
        ma, mb = _by_report(ma, a.groups), _by_report(mb, a.groups)
    return matrix_bootstrap(ma, mb, names, samples, seed)


def matrix_bootstrap(
    ma: np.ndarray, mb: np.ndarray, names: Sequence[str], samples: int, seed: int
) -> dict[str, Difference]:
    """paired_bootstrap on count matrices (rows: utterances or reports, the same row order for both)."""
    if ma.shape != mb.shape:
        raise ValueError("paired bootstrap needs the same rows for both systems")
    n = len(ma)
    rng = np.random.default_rng(seed)
    weights = (
        rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)
        if n
        else np.zeros((samples, 0))
    )
    totals_a, totals_b = weights @ ma, weights @ mb  # (samples, columns)
    tail = (1.0 - CONFIDENCE) / 2 * 100
    out = {}
    for name in names:
        point_a, point_b = metric_value(ma, name), metric_value(mb, name)
        deltas = _metric(totals_b, name) - _metric(totals_a, name)
        deltas = deltas[~np.isnan(deltas)]
        low, high = np.percentile(deltas, [tail, 100 - tail]) if deltas.size else (None, None)
        delta = None if point_a is None or point_b is None else point_b - point_a
        out[name] = Difference(name, point_a, point_b, delta, _none(low), _none(high), CONFIDENCE, samples)
    return out


def _none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
