"""Word confidences (pipeline.inference.confidence): tokens -> words, words kept through term snapping,
words -> character spans of the formatted report; and both engines' word probabilities (tiny random
Whisper, and the real tiny.en on ct2)."""

from __future__ import annotations

import itertools

import pytest

from pipeline.config import TranscribeConfig
from pipeline.inference.confidence import Word, group_words, low_confidence_spans, realign, word_spans
from pipeline.text import format_dictation

PIECES = [b" CT", b" abd", b"omen", b",", b" 3", b".", b"8", b" cm", b" caf", b"\xc3", b"\xa9", b" new"]


def _decode(ids: list[int]) -> str:
    return b"".join(PIECES[i] for i in ids).decode("utf-8", errors="replace")


def test_tokens_group_into_words_at_leading_spaces_with_the_lowest_spoken_probability():
    probs = [0.9, 0.8, 0.3, 0.1, 0.7, 0.2, 0.6, 0.95, 0.5, 0.4, 0.45, 0.99]
    words = group_words(list(range(len(PIECES))), probs, _decode)
    assert [w.text for w in words] == ["CT", "abdomen,", "3.8", "cm", "café", "new"]
    # "," (0.1) and "." (0.2) are punctuation only: the word's probability is that of its spoken tokens;
    # "é" is two byte tokens decoded together and takes the lower of the two
    assert [w.probability for w in words] == [0.9, 0.3, 0.6, 0.95, 0.4, 0.99]
    assert group_words([3], [0.1], _decode) == [Word(",", 0.1)]  # punctuation alone keeps its own
    assert group_words([], [], _decode) == []


def test_snapped_terms_get_the_lowest_probability_of_the_words_they_replaced():
    words = [Word("Small", 0.9), Word("high", 0.6), Word("atal", 0.2), Word("hernia.", 0.8)]
    out = realign(words, "Small hiatal hernia.")
    assert out == [Word("Small", 0.9), Word("hiatal", 0.2, True), Word("hernia.", 0.8)]
    assert realign(words, "Small high atal hernia.") == words  # nothing changed: every word keeps its own


def test_spans_land_on_the_formatted_text_and_commands_are_given_up():
    spoken = "the colon is unremarkable period new paragraph impression colon four millimeters nodule at L4 L5 period"
    probs = [0.9, 0.3, 0.9, 0.45, 0.2, 0.9, 0.9, 0.4, 0.9, 0.35, 0.25, 0.1, 0.9, 0.15, 0.9, 0.9]
    words = [Word(w, p) for w, p in zip(spoken.split(), probs)]
    formatted = format_dictation(spoken)
    assert formatted == "The colon is unremarkable.\n\nImpression: 4 mm nodule at L4-L5."
    spans = low_confidence_spans(formatted, words, 0.5)
    assert [(formatted[s["start"] : s["end"]], s["probability"]) for s in spans] == [
        ("colon", 0.3), ("unremarkable", 0.45), ("Impression", 0.4), ("4", 0.35), ("mm", 0.25), ("nodule", 0.1),
        ("L4", 0.15),  # "L4 L5" became "L4-L5": each level keeps its own probability
    ]  # fmt: skip
    assert all(s["word"] == formatted[s["start"] : s["end"]] and not s["corrected"] for s in spans)
    assert low_confidence_spans(formatted, words, 0.0) == []  # 0 = off
    every = low_confidence_spans(formatted, words, 1.0)
    assert len(every) == len(word_spans(formatted, words)) == 11  # all but the 5 command words (one "colon" of two)


def test_words_that_cannot_be_placed_are_given_up_and_spans_never_overlap():
    formatted = "No acute findings. Lungs are clear."
    words = [Word(w, 0.1) for w in ("know", "a", "cute", "findings", "period", "lung", "sir", "clear", "period")]
    spans = word_spans(formatted, words)
    assert all(0 <= s["start"] < s["end"] <= len(formatted) for s in spans)
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(spans))
    assert "findings" in [s["word"] for s in spans] and "clear" in [s["word"] for s in spans]
    assert word_spans("", words) == [] and word_spans(formatted, []) == []


def _engine_words(engine_name: str, model: str, audios, max_new_tokens: int):
    from pipeline.inference.engines import load_engine

    options = TranscribeConfig(engine=engine_name, threads=1, max_new_tokens=max_new_tokens, compute_type="float32")
    engine = load_engine(model, None, options)
    plain = engine.decode_chunks(audios, None)
    decoded = engine.decode_chunks(audios, None, with_words=True)
    prompted = engine.decode_chunks(audios, "pleural effusion", with_words=True)
    assert [d.text for d in prompted] == engine.decode_chunks(audios, "pleural effusion")
    return plain, decoded


@pytest.mark.parametrize("engine_name", ["hf", "ct2"])
def test_engines_give_one_probability_per_word_and_the_same_text(engine_name, tiny_whisper_dir, speech_clips):
    audios = [clip.audio for clip in speech_clips[:3]]
    plain, decoded = _engine_words(engine_name, str(tiny_whisper_dir), audios, 12)
    assert [d.text for d in decoded] == plain  # byte-identical with and without confidences
    assert any(d.words for d in decoded)
    for d in decoded:
        assert " ".join(w.text for w in d.words).split() == d.text.split()
        assert all(0.0 < w.probability <= 1.0 for w in d.words)


@pytest.mark.integration
def test_real_tiny_en_words_on_ct2_are_mostly_confident(speech_clips):
    plain, decoded = _engine_words("ct2", "tiny.en", [clip.audio for clip in speech_clips[:2]], 60)
    assert [d.text for d in decoded] == plain
    words = [w for d in decoded for w in d.words]
    assert len(words) >= 8 and all(0.0 < w.probability <= 1.0 for w in words)
    assert sum(w.probability > 0.5 for w in words) > len(words) / 2  # clear espeak speech: most words sure
