"""Final signed reports (pipeline/tts/final_reports.py) and verified spans (pipeline/verify.py), without models."""

from __future__ import annotations

import itertools

import pytest

from pipeline import alignment
from pipeline.tts.final_reports import EDIT_KINDS, HEADERS, MACROS, SCRATCH, TEMPLATES, final_report
from pipeline.verify import VerifyOptions, plan_verified

REPORT = (
    "Chest radiograph, two views\n\n"
    "Findings: The lungs are hyperinflated. There is a new consolidation in the right lower lobe. "
    "A nodule in the left upper lobe measures 1.2 cm. The heart is normal in size. No pleural effusion.\n\n"
    "Impression: 1. Right lower lobe pneumonia. 2. Left upper lobe nodule of 1.2 cm."
)
OTHER = (
    "CT abdomen and pelvis\n\nFindings: The liver is normal in size. No biliary dilatation. "
    "The kidneys enhance symmetrically.\n\nImpression: No acute abdominal process."
)


def only(kind: str) -> dict[str, float]:
    return {k: 1.0 if k == kind else 0.0 for k in EDIT_KINDS}


def tokens(text: str) -> list[str]:
    return text.split()


def test_an_unedited_report_is_what_was_said():
    f = final_report("r1", REPORT, only("template"), share=0.0, seed=1, others=[OTHER])
    assert f.report == REPORT and f.dictated == REPORT and all(f.spoken) and not f.edited
    assert len(f.spoken) == len(tokens(REPORT))


def test_each_edit_kind_and_its_truth():
    f = final_report("r1", REPORT, only("mismatch"), 1.0, 1, [OTHER])
    assert f.report == OTHER and not any(f.spoken) and f.dictated == REPORT

    f = final_report("r1", REPORT, only("scratch"), 1.0, 1)
    assert SCRATCH in f.dictated and f.report == REPORT and all(f.spoken)
    wrong = f.dictated.split(SCRATCH)[0].rstrip().rstrip(".").split(". ")[-1]
    assert len(wrong.split()) >= 3
    assert wrong not in REPORT  # the retracted version differs (a number or a side)

    f = final_report("r1", REPORT, only("macro"), 1.0, 1)
    assert "Macro " in f.dictated and "The heart is normal in size." not in f.report
    expansions = [x for _, x, _ in MACROS if x in f.report]
    assert len(expansions) == 1
    said = [t for t, s in zip(tokens(f.report), f.spoken) if s]
    assert not set(tokens(expansions[0])) - set(tokens(REPORT)) <= set(said)  # the template text was not said

    f = final_report("r1", REPORT, only("delete"), 1.0, 1)
    assert len(tokens(f.report)) < len(tokens(REPORT)) and all(f.spoken) and f.dictated == REPORT

    f = final_report("r1", REPORT, only("template"), 1.0, 1)
    added = [t for t, _ in TEMPLATES if t in f.report]
    assert len(added) == 1 and sum(not s for s in f.spoken) == len(tokens(added[0]))

    f = final_report("r1", REPORT, only("header"), 1.0, 1)
    assert f.report.split("\n\n")[0] in HEADERS and f.report.endswith(REPORT)

    f = final_report("r1", REPORT, only("reorder"), 1.0, 1)
    assert f.report.index("Impression:") < f.report.index("Findings:") and all(f.spoken)

    f = final_report("r1", REPORT, only("number"), 1.0, 1)
    changed = [t for t, s in zip(tokens(f.report), f.spoken) if not s]
    assert len(changed) == 1 and changed[0].rstrip(".") not in ("1.2", "1", "2") and changed[0][0].isdigit()


def test_edits_are_seeded_and_template_text_never_repeats_a_held_out_sentence():
    rates = {k: 0.5 for k in EDIT_KINDS}
    a = final_report("r1", REPORT, rates, 1.0, 7, [OTHER])
    assert a == final_report("r1", REPORT, rates, 1.0, 7, [OTHER])
    f = final_report("r1", REPORT, only("template"), 1.0, 1, forbidden=lambda s: True)
    assert not f.edited and f.report == REPORT


# ---------------------------------------------------------------------------------------------- verification


def timed(said: str, word: float = 0.35, pause: float = 0.6) -> tuple[list[alignment.HypWord], float]:
    """What a perfect base model would hear of `said` (dictation with spoken commands), with pauses at ends."""
    out, t = [], 0.3
    for w in said.split():
        out.append(alignment.HypWord(" " + w, t, t + word))
        t += word + (pause if w in ("period", "paragraph", "colon") else 0.05)
    return out, t + 0.3


def spoken_form(text: str) -> str:
    from pipeline.text import to_spoken

    return to_spoken(text, commands=True)


def verify(report: str, said: str, **options) -> object:
    from pipeline.scoring_form import normalize_for_scoring
    from pipeline.stages.segment import command_words
    from pipeline.verify import apply_retractions

    words, duration = timed(spoken_form(said))
    kept, retracted = apply_retractions(words)
    aligned = alignment.align(report, kept, normalize_for_scoring, command_words(), duration)
    pauses = [(a.end, b.start) for a, b in itertools.pairwise(words) if b.start - a.end > 0.3]
    plan = plan_verified(
        report, aligned, pauses, duration, VerifyOptions(**options), command_words(), normalize_for_scoring, retracted
    )
    return plan, words


def covered(plan, words, needle: str) -> bool:
    """Whether any kept piece's audio holds the first hypothesis word equal to `needle`."""
    hit = next(w for w in words if w.text.strip().lower() == needle)
    return any(s.start <= (hit.start + hit.end) / 2 <= s.end for s in plan.segments)


def test_a_verbatim_report_is_verified_whole():
    plan, _ = verify(REPORT, REPORT)
    assert plan.reason is None and plan.share == 1.0 and not plan.dropped
    kept = " ".join(s.text for s in plan.segments)
    assert tokens(kept) == tokens(REPORT)
    assert all(s.end - s.start <= 30.0 for s in plan.segments)


def test_text_nobody_said_is_dropped_and_speech_the_report_lacks_is_cut_out():
    template = "Technique: Images were acquired according to the departmental protocol."
    report = REPORT.replace("Findings:", f"{template}\n\nFindings:")
    plan, _ = verify(report, REPORT)
    assert plan.reason is None and "departmental" not in " ".join(s.text for s in plan.segments)
    assert any("not heard" in why or "words heard" in why for _, why in plan.dropped)

    said = REPORT.replace("No pleural effusion.", "Small hiatal hernia incidentally seen. No pleural effusion.")
    plan, words = verify(REPORT, said)
    assert plan.reason is None and not covered(plan, words, "hiatal")  # the deleted sentence's audio
    assert "No pleural effusion." in " ".join(s.text for s in plan.segments)


def test_a_changed_number_and_a_scratched_phrase_never_reach_a_piece():
    report = REPORT.replace("measures 1.2 cm", "measures 1.6 cm")
    plan, _ = verify(report, REPORT)
    assert "1.6" not in " ".join(s.text for s in plan.segments)
    assert any("number or side" in why for _, why in plan.dropped)

    said = REPORT.replace("There is a new", "There is a new consolidation in the left. Scratch that. There is a new")
    plan, words = verify(REPORT, said)
    assert plan.reason is None and not covered(plan, words, "scratch") and not covered(plan, words, "left")
    assert "There is a new consolidation in the right lower lobe." in " ".join(s.text for s in plan.segments)


def test_scratch_that_takes_back_the_sentence_before_it():
    from pipeline.verify import apply_retractions

    words, _ = timed(spoken_form("No effusion. The nodule is 5 mm. Scratch that. The nodule is 7 mm. Normal heart."))
    kept, spans = apply_retractions(words)
    said = " ".join(w.text.strip() for w in kept)
    assert said == "No effusion period The nodule is 7 millimeters period Normal heart period"
    assert len(spans) == 1 and spans[0][0] == words[3].start


def test_a_section_the_report_moved_is_found_again_in_the_audio():
    findings, impression = REPORT.split("\n\n")[1:]
    report = f"Chest radiograph, two views\n\n{impression}\n\n{findings}"
    plan, words = verify(report, REPORT)
    kept = " ".join(s.text for s in plan.segments)
    assert plan.reason is None and "Right lower lobe pneumonia." in kept and "The lungs are hyperinflated." in kept
    for s in plan.segments:  # each piece's audio holds its own words, not the other section's
        heard = " ".join(w.text for w in words if s.start <= (w.start + w.end) / 2 <= s.end).lower()
        assert ("pneumonia" in s.text) == ("pneumonia" in heard)


def test_the_wrong_report_is_rejected_whole():
    plan, _ = verify(OTHER, REPORT)
    assert plan.reason is not None and "supported by the audio" in plan.reason and not plan.segments


@pytest.mark.parametrize("max_seconds", [6.0, 30.0])
def test_pieces_stay_within_max_seconds_and_keep_text_order(max_seconds):
    plan, _ = verify(REPORT, REPORT, max_seconds=max_seconds)
    assert plan.segments and all(s.end - s.start <= max_seconds + 1e-9 for s in plan.segments)
    starts = [s.start for s in plan.segments]
    assert starts == sorted(starts) and all(a.end <= b.start for a, b in zip(plan.segments, plan.segments[1:]))
