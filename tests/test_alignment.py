"""Reference-to-hypothesis word alignment, cut choice and segment text assignment (pure, no model)."""

import re

import pytest

from pipeline import alignment as al

COMMANDS = ("period", "comma", "colon", "new", "paragraph")


def norm(text: str) -> str:
    """Test-local scoring normalizer: lower case, punctuation dropped (hyphens split words)."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def timed(spoken: str, step: float = 0.4, start: float = 0.0, pauses: dict[int, float] | None = None):
    """Hypothesis words, one every `step` s (0.3 s long), with extra silence before word indices in `pauses`."""
    words, t = [], start
    for i, word in enumerate(spoken.split()):
        t += (pauses or {}).get(i, 0.0)
        words.append(al.HypWord(" " + word, t, t + 0.3))
        t += step
    return words


def kinds(alignment):
    return [op.kind for op in alignment.ops]


def test_exact_match_gives_each_token_its_word_time():
    ref = "No pleural effusion."
    a = al.align(ref, timed("No pleural effusion"), norm, COMMANDS, 2.0)
    assert kinds(a) == ["match"] * 3
    assert a.token_times == pytest.approx((0.15, 0.55, 0.95))
    assert a.matched_fraction == 1.0 and a.errors == 0


def test_spoken_commands_align_to_punctuation_and_line_breaks_for_free():
    ref = "Small right effusion.\n\nIMPRESSION: Heart normal, lungs clear."
    spoken = (
        "small right effusion period new paragraph impression colon heart normal comma lungs clear period"
    )
    a = al.align(ref, timed(spoken), norm, COMMANDS, 10.0)
    assert a.errors == 0 and a.matched_fraction == 1.0
    assert kinds(a).count("free") == 6
    heart = [t.text for t in a.tokens].index("Heart")
    assert a.token_times[heart] == pytest.approx(8 * 0.4 + 0.15)  # after "impression colon"


def test_command_word_that_is_a_real_reference_word_still_matches():
    ref = "A new nodule over a period of time."
    a = al.align(ref, timed("a new nodule over a period of time period"), norm, COMMANDS, 5.0)
    assert a.matched_fraction == 1.0
    assert kinds(a)[-1] == "free"


def test_insertion_is_counted_and_does_not_shift_times():
    ref = "The lungs are clear."
    a = al.align(ref, timed("the lungs um are clear"), norm, COMMANDS, 3.0)
    assert kinds(a).count("ins") == 1 and a.errors == 1
    assert a.token_times[2] == pytest.approx(3 * 0.4 + 0.15)  # "are" keeps its own word's time


def test_deletion_is_interpolated_between_its_neighbours():
    ref = "Mild bibasilar atelectasis is present."
    a = al.align(ref, timed("mild is present"), norm, COMMANDS, 3.0)
    assert kinds(a).count("del") == 2 and a.errors == 2
    times = a.token_times
    assert times[0] < times[1] < times[2] < times[3]
    assert 0.3 <= times[1] and times[2] <= 0.4  # inside the gap between "mild" and "is"


def test_similar_spellings_pair_as_substitutions():
    ref = "Small pleural effusion."
    a = al.align(ref, timed("small plural fusion"), norm, COMMANDS, 2.0)
    assert kinds(a) == ["match", "sub", "sub"]
    assert [op.hyp for op in a.ops] == [0, 1, 2]


def test_split_words_pair_with_the_closest_spelling():
    ref = "Bibasilar atelectasis."
    a = al.align(ref, timed("by bezel or eight lictasis"), norm, COMMANDS, 3.0)
    subs = {op.ref: op.hyp for op in a.ops if op.kind == "sub"}
    assert subs[1] == 4  # atelectasis ~ lictasis
    assert a.errors == 5  # 2 substitutions + 3 insertions


def test_punctuation_only_tokens_travel_with_the_previous_token():
    ref = "Lungs - clear / stable."
    a = al.align(ref, timed("lungs clear stable"), norm, COMMANDS, 2.0)
    assert [t.words for t in a.tokens][1] == ()
    assert a.token_times[1] == a.token_times[0]
    assert a.token_times[3] == a.token_times[2]


def test_numbers_and_measurements_keep_their_place():
    ref = "A 5 mm nodule at C5-C6 is unchanged."
    a = al.align(ref, timed("a 5 millimeter nodule at c5 c6 is unchanged period"), norm, COMMANDS, 5.0)
    ops = {op.ref: op.kind for op in a.ops if op.ref >= 0}
    assert ops[1] == "match"  # the number
    assert ops[2] == "sub"  # mm / millimeter
    tokens = [t.text for t in a.tokens]
    assert a.token_times[tokens.index("nodule")] == pytest.approx(3 * 0.4 + 0.15)
    assert a.tokens[tokens.index("C5-C6")].words == ("c5", "c6")


def test_no_hypothesis_spreads_reference_over_the_audio():
    a = al.align("one two three four", [], norm, COMMANDS, 8.0)
    assert a.matched_fraction == 0.0
    assert a.token_times == pytest.approx((1.0, 3.0, 5.0, 7.0))


def test_segment_texts_are_exact_slices_that_rebuild_the_reference():
    ref = "Small effusion.\n\nHeart normal. Lungs clear.\nNo pneumothorax."
    spoken = "small effusion period new paragraph heart normal period lungs clear period new line no pneumothorax period"
    words = timed(spoken, pauses={5: 1.0, 11: 1.0})
    a = al.align(ref, words, norm, COMMANDS + ("line",), 12.0)
    cuts = [(words[4].end, words[5].start), (words[10].end, words[11].start)]
    candidates = al.candidate_cuts(cuts, a)
    bounds = al.choose_cuts(candidates, 0.0, 9.0, max_seconds=4.0)
    segments = al.assign_segments(ref, a, bounds)
    assert [s.text for s in segments] == ["Small effusion.", "Heart normal. Lungs clear.", "No pneumothorax."]
    assert " ".join(s.text for s in segments).split() == ref.split()
    assert all(s.errors == 0 for s in segments)


def test_newline_inside_a_segment_is_kept():
    ref = "Effusion.\n\nHeart normal."
    a = al.align(ref, timed("effusion period new paragraph heart normal"), norm, COMMANDS, 3.0)
    (segment,) = al.assign_segments(ref, a, [0.0, 3.0])
    assert segment.text == ref


def test_errors_are_counted_in_the_segment_where_they_happen():
    ref = "one two three four five six"
    words = timed("one two three four fife six extra")
    a = al.align(ref, words, norm, (), 3.0)
    segments = al.assign_segments(ref, a, [0.0, 1.15, 3.0])
    assert [s.n_ref_words for s in segments] == [3, 3]
    assert [s.errors for s in segments] == [0, 2]  # fife/five and the inserted "extra"
    assert segments[1].wer == pytest.approx(2 / 3)


def test_cut_between_a_word_and_its_spoken_period_is_avoided():
    ref = "Small effusion. Heart normal."
    words = timed("small effusion period heart normal", pauses={2: 0.8, 3: 0.5})
    a = al.align(ref, words, norm, COMMANDS, 4.0)
    inside, after = al.candidate_cuts([(words[1].end, words[2].start), (words[2].end, words[3].start)], a)
    assert inside.cost > after.cost  # the longer pause, but it splits "effusion." from its "period"


def test_choose_cuts_keeps_pieces_within_limits_and_prefers_long_pauses():
    candidates = [al.Candidate(t, 1.0 / p) for t, p in [(8, 0.2), (10, 1.0), (18, 0.3), (20, 0.9), (29, 0.2)]]
    bounds = al.choose_cuts(candidates, 0.0, 30.0, max_seconds=12.0)
    assert bounds == [0.0, 10.0, 20.0, 30.0]
    assert al.choose_cuts(candidates, 0.0, 30.0, max_seconds=12.0, min_seconds=11.0) is None
    assert al.choose_cuts([], 0.0, 30.0, max_seconds=12.0) is None
    assert al.choose_cuts([], 0.0, 11.0, max_seconds=12.0) == [0.0, 11.0]
    assert al.longest_uncut(candidates, 0.0, 30.0) == 9.0


def test_long_alignment_matches_five_of_six_words():  # its speed: scripts/bench_units.py
    vocab = [f"w{i}" for i in range(200)]
    ref_words = [vocab[(i * 7919) % 200] for i in range(900)]
    hyp = [w if i % 6 else "x" for i, w in enumerate(ref_words)]
    a = al.align(" ".join(ref_words), timed(" ".join(hyp), step=0.3), norm, (), 300.0)
    assert a.matched_fraction == pytest.approx(5 / 6, abs=0.01)


def test_real_normalizer_keeps_commands_and_punctuation_aligned():
    from pipeline.scoring_form import normalize_for_scoring
    ref = "Small right pleural effusion.\n\nIMPRESSION: A 5 mm nodule at C5-C6, unchanged."
    spoken = (
        "small right pleural effusion period new paragraph impression colon a 5 mm nodule at c5-c6 comma "
        "unchanged period"
    )
    a = al.align(ref, timed(spoken), normalize_for_scoring, COMMANDS, 10.0)
    assert a.errors == 0 and a.matched_fraction == 1.0


def test_two_hypothesis_words_can_match_one_reference_word():
    from pipeline.scoring_form import normalize_for_scoring
    ref = "Disc bulge at C5-C6 measuring 25 mm."
    a = al.align(
        ref,
        timed("disc bulge at C5 C6 measuring twenty five millimeters period"),
        normalize_for_scoring,
        COMMANDS,
        6.0,
    )
    assert a.errors == 0
    assert [op.kind for op in a.ops].count("merge") == 2
    tokens = [t.text for t in a.tokens]
    assert a.token_times[tokens.index("C5-C6")] == pytest.approx((3 * 0.4 + 4 * 0.4 + 0.3) / 2)


def test_commands_the_normalizer_drops_still_mark_the_token_span():
    def drops_period(text):
        return " ".join(w for w in norm(text).split() if w != "period")

    words = timed("small effusion period heart normal", pauses={2: 0.8})
    a = al.align("Small effusion. Heart normal.", words, drops_period, COMMANDS, 4.0)
    assert kinds(a).count("free") == 1
    assert a.token_spans[1][1] == pytest.approx((words[2].start + words[2].end) / 2)
