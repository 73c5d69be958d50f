"""Clinical-error rules (pipeline.clinical) on hand-made pairs, and their wiring into pipeline.metrics."""

from __future__ import annotations

import json

import pytest

from pipeline.bootstrap import paired_bootstrap
from pipeline.clinical_counts import ClinicalCounts
from pipeline.metrics import score

NONE: dict[str, int] = {}

# (reference, hypothesis, expected nonzero counts). Both sides go through the scoring normalizer.
CASES = [
    # must NOT count: equivalent wording, normalized forms, errors that are not clinical
    ("no evidence of pneumothorax", "without pneumothorax", NONE),
    ("No pneumothorax is seen.", "Pneumothorax is not seen.", NONE),
    ("negative for pulmonary embolism", "no pulmonary embolism", NONE),
    ("there is no pleural effusion", "no pleural effusion is present", NONE),
    ("the heart is not enlarged", "The heart isn't enlarged.", NONE),
    ("pneumothorax cannot be excluded", "pneumothorax can not be excluded", NONE),
    ("no interval change in the small effusion", "unchanged small effusion", NONE),
    ("no pneumothorax", "no new mothorax", NONE),  # the finding itself is wrong: a term error, not negation
    ("no biliary dilatation and the duct is normal", "and the duct is normal", NONE),  # finding deleted
    ("no pleural effusion or pneumothorax", "no plural effusion or pneumothorax", NONE),
    ("a 5 millimeter nodule", "a 5 mm nodule", NONE),
    ("five millimeters", "5 mm", NONE),
    ("a 0.5 cm nodule", "a 5 mm nodule", NONE),  # the same length in another unit
    ("a 10 ml collection", "a 10 cc collection", NONE),
    ("disc bulge at C5 C6", "disc bulge at C5-C6", NONE),
    ("Left-sided pleural effusion", "left pleural effusion", NONE),
    ("bilateral pleural effusions", "pleural effusions bilaterally", NONE),  # moved, same side
    ("both lungs are clear", "the lungs are clear", NONE),  # "both" alone is not a side
    ("the liver is unremarkable", "liver is unremarkable", NONE),  # a dropped non-clinical word
    ("mild degenerative change", "mild degenerative changes", NONE),
    # negation
    ("no pneumothorax", "pneumothorax", {"negation": 1}),
    ("pneumothorax", "no pneumothorax", {"negation": 1}),
    ("there is no new mass", "there is a new mass", {"negation": 1}),
    ("the heart is not enlarged", "the heart is enlarged", {"negation": 1}),
    ("pneumothorax is not seen", "pneumothorax is seen", {"negation": 1}),
    ("no evidence of pneumothorax", "evidence of pneumothorax", {"negation": 1}),
    ("pneumothorax cannot be excluded", "pneumothorax is excluded", {"negation": 1}),
    (
        "no focal consolidation, pleural effusion, or pneumothorax",
        "focal consolidation, pleural effusion, or pneumothorax",
        {"negation": 1},
    ),  # one cue, one error
    ("no pneumothorax no effusion", "pneumothorax effusion", {"negation": 2}),
    # laterality
    ("left pleural effusion", "right pleural effusion", {"laterality": 1}),
    ("bilateral effusions", "left effusions", {"laterality": 1}),
    ("small left effusion", "small effusion", {"laterality": 1}),  # the side dropped
    ("both kidneys are normal", "left kidneys are normal", {"laterality": 1}),
    ("left lower lobe and right upper lobe", "right lower lobe and left upper lobe", {"laterality": 2}),
    # numbers, units, levels
    ("a 5 mm nodule", "a 5 cm nodule", {"unit": 1}),
    ("a 5 mm nodule", "a 5 nodule", {"unit": 1}),
    ("3.4 cm mass", "3.9 cm mass", {"number": 1}),
    ("a 12 mm nodule", "a 2 mm nodule", {"number": 1}),
    ("a 5 mm nodule", "a 6 cm nodule", {"number": 1}),  # one measurement changed: one error
    ("1.2 x 0.8 cm lesion", "1.2 x 0.3 cm lesion", {"number": 1}),
    ("a 5 mm nodule in the left lobe", "a nodule in the left lobe", {"number": 1}),
    ("measuring 1.5 cm in short axis", "measuring 1 5 cm in short axis", {"number": 1}),  # one measurement
    ("series 3 image 45", "series 3 image 44", {"number": 1}),
    ("disc bulge at L4-L5", "disc bulge at L5-S1", {"level": 1}),
    ("fracture at L4", "fracture at L5", {"level": 1}),
    # several kinds at once
    (
        "no right pleural effusion and a 4 mm nodule",
        "no left pleural effusion and a 4 cm nodule",
        {"laterality": 1, "unit": 1},
    ),
    ("no left effusion", "left effusion", {"negation": 1}),
]


@pytest.mark.parametrize(("ref", "hyp", "expected"), CASES, ids=[f"{r} | {h}" for r, h, _ in CASES])
def test_hand_made_pairs(ref, hyp, expected):
    counts = score([ref], [hyp]).clinical.counts
    assert counts == ClinicalCounts(**expected)


def test_there_are_at_least_30_cases_with_both_kinds():
    assert len(CASES) >= 30
    assert sum(not e for _, _, e in CASES) >= 10 and sum(bool(e) for _, _, e in CASES) >= 20


def test_errors_carry_the_change_and_aligned_snippets():
    u = score(["the lungs are clear there is no pneumothorax on the left"],
              ["the lungs are clear there is pneumothorax on the right"]).per_utterance[0]  # fmt: skip
    assert [(e.kind, e.change) for e in u.clinical] == [
        ("negation", "no -> (none)"),
        ("laterality", "left -> right"),
    ]
    negation = u.clinical[0]
    assert negation.group == "negation"
    assert negation.ref == "clear there is no pneumothorax on the left"
    assert negation.hyp == "clear there is pneumothorax on the right"  # the same alignment columns
    assert u.clinical[1].ref.endswith("on the left") and u.clinical[1].hyp.endswith("on the right")


def test_counts_per_utterance_and_per_report():
    refs = ["no pneumothorax", "left effusion", "a 5 mm nodule", "normal study", "no effusion"]
    hyps = ["pneumothorax", "right effusion", "a 5 mm nodule", "normal study", "effusion"]
    groups = ["r1", "r1", "r2", "r2", "r3"]
    clinical = score(refs, hyps, groups=groups).clinical
    assert clinical.counts == ClinicalCounts(negation=2, laterality=1)
    assert (clinical.utterances, clinical.utterances_with_error, clinical.utterance_share) == (5, 3, 0.6)
    assert (clinical.reports, clinical.reports_with_error) == (3, 2)
    assert clinical.report_share == pytest.approx(2 / 3)
    assert [(r.report, r.utterances, r.counts.total) for r in clinical.per_report] == [
        ("r1", 2, 2), ("r2", 2, 0), ("r3", 1, 1)]  # fmt: skip
    assert clinical.per_100_utterances("negation") == 40.0 and clinical.per_100_utterances() == 60.0
    ungrouped = score(refs, hyps).clinical
    assert (ungrouped.reports, ungrouped.reports_with_error, ungrouped.grouped) == (5, 3, False)


def test_clinical_block_in_plain_json():
    scores = score(["no pneumothorax", ""], ["pneumothorax", "uh"], groups=["a", "a"])
    data = json.loads(json.dumps(scores.to_dict(per_utterance=True), allow_nan=False))
    assert data["clinical"]["negation"] == 1 and data["clinical"]["report_share"] == 1.0
    assert data["clinical"]["per_report"] == [
        {
            "report": "a",
            "utterances": 2,
            "negation": 1,
            "laterality": 0,
            "number": 0,
            "unit": 0,
            "level": 0,
            "measurement": 0,
            "total": 1,
        }
    ]
    assert data["per_utterance"][0]["clinical"][0]["change"] == "no -> (none)"
    assert "per_report" not in score(["a"], ["a"]).to_dict()["clinical"]  # no report ids, no per-report list


def test_report_ids_must_match_the_utterances():
    with pytest.raises(ValueError, match="2 report ids for 1 utterances"):
        score(["a"], ["a"], groups=["r1", "r2"])


def _pair(n_reports: int, pieces: int = 3):
    refs = ["no pneumothorax", "left effusion", "a 5 mm nodule"][:pieces] * n_reports
    groups = [f"r{k}" for k in range(n_reports) for _ in range(pieces)]
    worse = [h if k % 4 else "pneumothorax" if h == "no pneumothorax" else h for k, h in enumerate(refs)]
    worse = [h.replace("left", "right") if k % 5 == 1 else h for k, h in enumerate(worse)]
    return score(refs, worse, groups=groups), score(refs, refs, groups=groups)


def test_paired_bootstrap_of_clinical_metrics_by_utterance_and_by_report():
    worse, perfect = _pair(40)
    by_utt = paired_bootstrap(
        worse, perfect, 300, seed=0, metrics=["clinical_errors", "clinical_utterance_share"]
    )
    errors = by_utt["clinical_errors"]
    assert errors.a == pytest.approx(worse.clinical.counts.total / 120) and errors.b == 0.0
    assert errors.ci_low <= errors.delta <= errors.ci_high < 0
    by_rep = paired_bootstrap(worse, perfect, 300, seed=0, metrics=["clinical_report_share"], by_report=True)
    share = by_rep["clinical_report_share"]
    assert share.a == pytest.approx(worse.clinical.report_share) and share.b == 0.0
    assert share.ci_low <= share.delta <= share.ci_high < 0
    # the point estimate does not depend on what is resampled
    rep_errors = paired_bootstrap(worse, perfect, 300, seed=0, metrics=["clinical_errors"], by_report=True)
    assert rep_errors["clinical_errors"].delta == pytest.approx(errors.delta)


def test_bootstrap_by_report_needs_the_same_report_ids():
    worse, _ = _pair(4)
    other = score([u.ref for u in worse.per_utterance], [u.hyp for u in worse.per_utterance], normalizer=None)
    with pytest.raises(ValueError, match="same report ids"):
        paired_bootstrap(worse, other, 10, seed=0, metrics=["clinical_report_share"], by_report=True)
