"""pipeline.metrics against hand-computed expectations, and jiwer on the same strings."""

from __future__ import annotations

import json
import random

import jiwer
import pytest

from pipeline.bootstrap import paired_bootstrap
from pipeline.lexicon import Lexicon
from pipeline.metrics import ErrorRate, compare_terms, score
from pipeline.scoring_form import normalize_for_scoring

LEXICON = Lexicon(["pleural effusion", "pneumothorax", "ile", "tree-in-bud", "hydronephrosis", "C5-C6"])


def _counts(rate: ErrorRate) -> tuple[int, int, int, int]:
    return rate.substitutions, rate.deletions, rate.insertions, rate.ref_count


# ------------------------------------------------------------------------------- WER / CER


@pytest.mark.parametrize(
    ("ref", "hyp", "counts", "wer"),
    [
        ("no acute cardiopulmonary process", "no acute cardiopulmonary progress", (1, 0, 0, 4), 0.25),
        ("no acute findings", "no findings", (0, 1, 0, 3), 1 / 3),
        ("no effusion", "no new effusion", (0, 0, 1, 2), 0.5),
        ("small pleural effusion", "", (0, 3, 0, 3), 1.0),
        ("", "effusion", (0, 0, 1, 0), None),
        ("", "", (0, 0, 0, 0), None),
        ("4 mm nodule at C5-C6 period", "Four millimeter nodule at c5 c6.", (0, 0, 0, 5), 0.0),
    ],
)
def test_word_errors(ref, hyp, counts, wer):
    scores = score([ref], [hyp])
    assert _counts(scores.wer) == counts
    assert scores.wer.rate == pytest.approx(wer) if wer is not None else scores.wer.rate is None


def test_wer_is_corpus_level_not_a_mean():
    refs = ["a b c d", "no acute findings", "no effusion"]
    hyps = ["a x c d", "no findings", "no new effusion"]
    scores = score(refs, hyps, normalizer=None)
    assert scores.wer.errors == 3 and scores.wer.ref_count == 9
    assert scores.wer.rate == pytest.approx(3 / 9)  # a mean of the rates would be 0.361


def test_empty_reference_counts_insertions_but_no_words():
    scores = score(["no effusion", "", ""], ["no effusion", "effusion", "um"])
    assert _counts(scores.wer) == (0, 0, 1, 2)  # the filler "um" is removed before scoring
    assert scores.wer.rate == pytest.approx(0.5)


def test_cer_hand_computed():
    scores = score(["abc", "no"], ["abd", "no"], normalizer=None)
    assert _counts(scores.cer) == (1, 0, 0, 5)  # spaces are characters too, as in jiwer
    assert score(["a b"], ["ab"], normalizer=None).cer.deletions == 1


def test_wer_and_cer_agree_with_jiwer():
    rng = random.Random(7)
    vocabulary = [
        "no",
        "acute",
        "pleural",
        "effusion",
        "small",
        "left",
        "lobe",
        "4",
        "mm",
        "c5-c6",
        "the",
        "of",
    ]
    refs, hyps = [], []
    for _ in range(60):
        ref = [rng.choice(vocabulary) for _ in range(rng.randint(1, 12))]
        hyp = [w if rng.random() > 0.3 else rng.choice(vocabulary) for w in ref if rng.random() > 0.1]
        hyp += [rng.choice(vocabulary) for _ in range(rng.randint(0, 2))]
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    scores = score(refs, hyps, LEXICON)
    refs_n = [normalize_for_scoring(r) for r in refs]
    hyps_n = [normalize_for_scoring(h) for h in hyps]
    assert scores.wer.rate == pytest.approx(jiwer.wer(refs_n, hyps_n))
    assert scores.cer.rate == pytest.approx(jiwer.cer(refs_n, hyps_n))
    # biased and unbiased words split the WER exactly
    assert scores.b_wer.errors + scores.u_wer.errors == scores.wer.errors
    assert scores.b_wer.ref_count + scores.u_wer.ref_count == scores.wer.ref_count


def test_length_mismatch():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        score(["a", "b"], ["a"])


# ------------------------------------------------------------------------------- B-WER / U-WER and terms


def test_multi_word_term_substitution():
    scores = score(
        ["small left pleural effusion no pneumothorax"],
        ["small left plural effusion no pneumothorax"],
        LEXICON,
    )
    assert _counts(scores.b_wer) == (1, 0, 0, 3)  # pleural, effusion, pneumothorax are biased
    assert _counts(scores.u_wer) == (0, 0, 0, 3)
    terms = scores.terms
    assert (terms.ref_occurrences, terms.hyp_occurrences, terms.hits) == (2, 1, 1)
    assert terms.recall == 0.5 and terms.precision == 1.0 and terms.error_rate == 0.5
    assert terms.f1 == pytest.approx(2 / 3)
    row = {r.term: r for r in scores.per_term}["pleural effusion"]
    assert (row.occurrences, row.misses, row.wrong_renderings) == (1, 1, (("plural effusion", 1),))


def test_term_inside_a_longer_word_is_not_a_term():
    clean = score(["ileus is present"], ["ileus is present"], LEXICON)
    assert clean.terms.ref_occurrences == 0 and clean.terms.recall is None
    assert clean.b_wer.ref_count == 0 and clean.u_wer.ref_count == 3
    split = score(["ileus is present"], ["ile us is present"], LEXICON)
    assert (split.terms.hyp_occurrences, split.terms.hits) == (1, 0)
    assert split.terms.precision == 0.0 and split.terms.f1 == 0.0
    assert {r.term: r.false_positives for r in split.per_term} == {"ile": 1}


def test_seen_and_unseen_halves_count_each_reference_word_once():
    """A term inside a longer term of the lexicon is not an occurrence of its own (new_words.split_lexicon)."""
    from pipeline.new_words import split_lexicon

    lexicon = Lexicon(["bibasilar", "bibasilar atelectasis", "atelectasis", "compressive atelectasis"])
    seen, unseen = split_lexicon(lexicon, ["mild bibasilar atelectasis", "atelectasis at the base"])
    assert (sorted(seen.terms), sorted(unseen.terms)) == (["atelectasis", "bibasilar atelectasis"],
                                                          ["bibasilar", "compressive atelectasis"])  # fmt: skip
    ref = ["bibasilar atelectasis and compressive atelectasis"]
    hyp = ["by basilar atelectasis and compressive atelectasis"]
    on_seen, on_unseen = score(ref, hyp, seen), score(ref, hyp, unseen)
    assert (on_seen.terms.ref_occurrences, on_unseen.terms.ref_occurrences) == (1, 1)
    assert (on_seen.b_wer.ref_count, on_unseen.b_wer.ref_count) == (2, 2)  # five words: 2 + 2 in terms, "and"
    assert on_seen.b_wer.errors == 1 and on_unseen.b_wer.errors == 0  # bibasilar -> basilar ("by": unbiased insertion)
    assert seen.display == {"bibasilar atelectasis": "bibasilar atelectasis", "atelectasis": "atelectasis"}


def test_empty_hypothesis_misses_every_term():
    scores = score(["small pleural effusion"], [""], LEXICON)
    assert _counts(scores.b_wer) == (0, 2, 0, 2)
    assert _counts(scores.u_wer) == (0, 1, 0, 1)
    assert scores.terms.recall == 0.0 and scores.terms.precision is None and scores.terms.f1 == 0.0
    assert scores.per_term[0].wrong_renderings == (("", 1),)


def test_insertions_biased_by_the_hypothesis_word():
    # "pleural" inserted where the hypothesis now holds a whole term: biased, with no biased reference word
    scores = score(["no effusion"], ["no pleural effusion"], LEXICON)
    assert _counts(scores.b_wer) == (0, 0, 1, 0) and scores.b_wer.rate is None
    assert _counts(scores.u_wer) == (0, 0, 0, 2)
    assert scores.terms.hyp_occurrences == 1 and scores.terms.precision == 0.0
    # a stop word of a term inserted outside the term is unbiased; a content word is biased
    stop = score(["tree in bud nodularity"], ["tree in bud in nodularity"], LEXICON)
    assert (stop.b_wer.insertions, stop.u_wer.insertions) == (0, 1)
    content = score(["tree in bud nodularity"], ["tree in bud bud nodularity"], LEXICON)
    assert (content.b_wer.insertions, content.u_wer.insertions) == (1, 0)


def test_substitution_counts_where_the_reference_word_belongs():
    scores = score(["the effusion"], ["the pneumothorax"], LEXICON)
    assert _counts(scores.u_wer) == (1, 0, 0, 2) and _counts(scores.b_wer) == (0, 0, 0, 0)
    assert scores.terms.hyp_occurrences == 1 and scores.terms.hits == 0


def test_insertion_inside_a_term_breaks_it():
    scores = score(["right pleural effusion"], ["right pleural small effusion"], LEXICON)
    assert scores.terms.hits == 0
    assert scores.per_term[0].wrong_renderings == (("pleural small effusion", 1),)
    # as in Le et al., an insertion is classed by the inserted word alone: "small" is no lexicon word and
    # lies in no hypothesis term, so it is a U error even though it broke the term
    assert _counts(scores.b_wer) == (0, 0, 0, 2)
    assert _counts(scores.u_wer) == (0, 0, 1, 1)


def test_per_term_table_renderings_most_frequent_first():
    refs = ["mild hydronephrosis"] * 4 + ["no pneumothorax"]
    hyps = [
        "mild hydro nephrosis",
        "mild process",
        "mild hydro nephrosis",
        "mild hydronephrosis",
        "no pneumothorax",
    ]
    scores = score(refs, hyps, LEXICON)
    row = scores.per_term[0]
    assert (row.term, row.occurrences, row.hits, row.misses) == ("hydronephrosis", 4, 1, 3)
    assert row.wrong_renderings == (("hydro nephrosis", 2), ("process", 1))
    assert row.error_rate == pytest.approx(0.75)
    assert [r.term for r in scores.per_term] == ["hydronephrosis", "pneumothorax"]


def test_normalization_makes_equivalent_terms_hit():
    scores = score(["Disc bulge at C5-C6 period"], ["disc bulge at c five c six"], LEXICON)
    assert scores.wer.errors == 0 and scores.terms.hits == 1


def test_to_dict_is_plain_json():
    scores = score(["small pleural effusion", ""], ["small plural effusion", "uh"], LEXICON)
    data = json.loads(json.dumps(scores.to_dict(per_utterance=True), allow_nan=False))
    assert data["wer"]["rate"] == pytest.approx(1 / 3)
    assert data["per_term"][0]["wrong_renderings"] == [{"text": "plural effusion", "count": 1}]
    assert len(data["per_utterance"]) == 2
    assert "b_wer" not in score(["a"], ["a"]).to_dict()  # no lexicon, no term metrics


# ------------------------------------------------------------------------------- bootstrap


def _systems(n: int, seed: int = 3):
    rng = random.Random(seed)
    refs = [
        f"small left pleural effusion and {rng.choice(['no', 'a'])} pneumothorax at c5-c6" for _ in range(n)
    ]
    worse = [r.replace("pleural", "plural") if rng.random() < 0.6 else r for r in refs]
    better = [r.replace("pleural", "plural") if rng.random() < 0.1 else r for r in refs]
    return score(refs, worse, LEXICON), score(refs, better, LEXICON)


def test_bootstrap_identical_systems_have_zero_difference():
    a, _ = _systems(50)
    diff = paired_bootstrap(a, a, samples=200, seed=0)
    assert diff["wer"].delta == 0 and diff["wer"].ci_low == 0 and diff["wer"].ci_high == 0


def test_bootstrap_interval_brackets_a_real_improvement():
    a, b = _systems(200)
    diff = paired_bootstrap(a, b, samples=500, seed=1)
    term = diff["term_error"]
    assert term.delta == pytest.approx(b.terms.error_rate - a.terms.error_rate)
    assert term.ci_low <= term.delta <= term.ci_high < 0
    assert diff["term_recall"].ci_low > 0
    assert paired_bootstrap(a, b, samples=500, seed=1) == diff  # seeded
    assert paired_bootstrap(a, b, samples=500, seed=2)["wer"] != diff["wer"]


def test_bootstrap_of_1000_resamples_of_500_utterances_gives_every_metric():  # speed: scripts/bench_units.py
    a, b = _systems(500)
    diff = paired_bootstrap(a, b, samples=1000, seed=0)
    assert diff["wer"].samples == 1000 and len(diff) == 8


def test_bootstrap_needs_the_same_references():
    a, _ = _systems(5)
    other = score(["x"] * 5, ["x"] * 5, LEXICON)
    with pytest.raises(ValueError, match="same references"):
        paired_bootstrap(a, other, samples=10, seed=0)


def test_compare_terms_before_after():
    refs = ["pleural effusion", "pleural effusion", "no pneumothorax"]
    before = score(refs, ["plural effusion", "plural effusion", "no pneumothorax"], LEXICON)
    after = score(refs, ["pleural effusion", "pleural effusion", "no new mothorax"], LEXICON)
    changes = {c.term: c for c in compare_terms(before, after)}
    assert (changes["pleural effusion"].misses_before, changes["pleural effusion"].misses_after) == (2, 0)
    assert changes["pneumothorax"].fixed == -1
    assert changes["pneumothorax"].wrong_renderings_after == (("new mothorax", 1),)
    assert [c.term for c in compare_terms(before, after)] == ["pleural effusion", "pneumothorax"]
