"""context.correct: snapping second-pass words to the context's terms, and the real-word rule."""

import pytest

from pipeline.correction import KnownWords, snap_terms

LEXICON = ["hiatal hernia", "hemidiaphragm", "chorionic", "cavitary", "ground-glass opacity", "cauda equina"]


@pytest.mark.parametrize(
    "text, terms, expected",
    [
        ("Patchy infal trait at the right base.", ["infiltrate", "bullae"], "Patchy infiltrate at the right base."),
        ("No plural effusion.", ["pleural effusion"], "No pleural effusion."),
        ("Echo genic kidneys.", ["echogenic"], "Echogenic kidneys."),
        ("No pleural effusion.", ["pleural effusion"], "No pleural effusion."),  # already right: untouched
        ("The weather is nice today.", ["pleural effusion", "infiltrate"], "The weather is nice today."),
        ("By bezel or eight lictasis.", ["bibasilar atelectasis"], "By bezel or eight lictasis."),  # too far
    ],
)
def test_snap_terms_rewrites_only_close_sound_alikes_of_context_terms(text, terms, expected):
    assert snap_terms(text, terms, 85) == expected


@pytest.mark.parametrize(
    "text, terms, without_rule, with_rule",
    [
        # a non-word in the span: snapped either way
        ("Small high atal hernia.", ["hiatal hernia"], "Small hiatal hernia.", "Small hiatal hernia."),
        ("The cotta equina is normal.", ["cauda equina"], "The cauda equina is normal.", "The cauda equina is normal."),
        # only real words (English, the lexicon's, their plurals): kept with the rule
        ("Chronic pancreatitis.", ["chorionic"], "Chorionic pancreatitis.", "Chronic pancreatitis."),
        ("No cavity.", ["cavitary"], "No cavitary.", "No cavity."),
        ("Both hemidiaphragms are flat.", ["hemidiaphragm"], "Both hemidiaphragm are flat.", "Both hemidiaphragms are flat."),
        ("Ground glass opacities.", ["ground-glass opacity"], "Ground-glass opacity.", "Ground glass opacities."),
    ],
)
def test_snap_terms_keeps_spans_of_real_words(text, terms, without_rule, with_rule):
    assert snap_terms(text, terms, 85) == without_rule
    assert snap_terms(text, terms, 85, KnownWords(LEXICON, 3.0)) == with_rule


def test_known_words_lexicon_words_plurals_and_english_by_frequency():
    known = KnownWords(LEXICON, 3.0)
    assert known("hemidiaphragm") and known("hemidiaphragms") and known("opacities") and known("groundglass")
    assert known("ground") and known("glass")  # parts of a hyphenated term
    assert known("cavity") and not known("cotta") and not known("atal")  # English by Zipf frequency >= 3
    lexicon_only = KnownWords(LEXICON, None)
    assert lexicon_only("cavitary") and not lexicon_only("cavity") and not lexicon_only("the")


def test_inference_context_corrects_each_window_with_its_own_retrieved_terms_and_keeps_real_words(tmp_path):
    from pipeline.config import ContextConfig
    from pipeline.context import InferenceContext

    (tmp_path / "lexicon.txt").write_text("\n".join([*LEXICON, "chronic pancreatitis"]) + "\n")
    words = lambda text: ["<prev>", *text.split()]
    first = ["small high atal hernia", "the cotta equina is normal chronic pancreatitis"]
    texts = ["Small high atal hernia.", "The cotta equina is normal. Chronic pancreatitis."]
    on = InferenceContext(ContextConfig(mode="retrieved", correct=True), tmp_path / "lexicon.txt", words, 64)
    on.second_pass(first)
    assert "hiatal hernia" in on.retrieved_terms[0] and "hiatal hernia" not in on.retrieved_terms[1]
    assert on.correct(texts) == ["Small hiatal hernia.", "The cauda equina is normal. Chronic pancreatitis."]
    swapped = on.correct(texts[::-1])  # each window keeps its own terms: nothing of the other's is written
    assert swapped == ["The cotta equina is normal. Chronic pancreatitis.", "Small high atal hernia."]
    off = InferenceContext(ContextConfig(mode="retrieved", correct=False), tmp_path / "lexicon.txt", words, 64)
    off.second_pass(first)
    assert off.correct(texts) == texts
