"""The evaluate stage: systems, vocabulary prompt, cached transcripts, report files, no text in logs."""

from __future__ import annotations

import json
import logging
import shutil
from typing import ClassVar

import numpy as np
import pytest
import soundfile

from pipeline import cli, runner, systems
from pipeline.config import config_from_dict, load_config
from pipeline.manifest import Record, read_manifest, write_manifest
from pipeline.typed_yaml import config_to_dict

SAMPLE_RATE = 16000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEXICON_TERMS = ("bibasilar atelectasis", "pleural effusion", "pneumothorax")
# id -> (reference, base hypothesis, hypothesis with the vocabulary prompt)
TEST = {
    "t1": ("No pleural effusion.", "No plural effusion.", "No pleural effusion."),
    "t2": ("Bibasilar atelectasis is seen.", "By basilar atelectasis is seen.", "Bibasilar atelectasis is seen."),
    "t3": ("The heart is normal.", "The heart is normal.", "The heart is normal."),
}
GENERAL = {"g1": ("The weather is cold.", "The weather is old.", "The weather is cold.")}
TRAIN = ("No pneumothorax.", "Small pneumothorax on the left.", "Small pleural effusion.")
SECRET_WORDS = ("plural", "basilar", "weather", "heart", "effusion", "atelectasis")  # from refs and hyps


class FakeTranscriber:
    """Stands in for pipeline.inference.hf.Transcriber: known text per clip (found by its length). Every
    model has the same encoder (as a decoder-only adapter leaves it)."""

    calls: ClassVar[list[tuple[str, str | None, int]]] = []  # (model dir name, prompt, clips)
    encoded: ClassVar[list[int]] = []  # clips per encode() call
    by_length: ClassVar[dict[int, tuple[str, str]]] = {}
    encoder_adapted = False

    def __init__(self, model_dir, adapter_dir=None, **options):
        self.model_dir, self.adapter_dir = model_dir, adapter_dir

    def encoder_key(self):
        return "the-one-encoder"

    def encode(self, arrays, progress=False):
        FakeTranscriber.encoded.append(len(arrays))
        return np.array([[[len(a)]] for a in arrays], dtype=np.float32)

    def transcribe(self, arrays, prompt=None, progress=False, encoder_states=None):
        assert encoder_states is not None and [int(s[0][0]) for s in encoder_states] == [len(a) for a in arrays]
        prompts = list(prompt) if isinstance(prompt, list) else [prompt] * len(arrays)
        FakeTranscriber.calls.append((self.model_dir.name, prompts[0] if len(set(prompts)) == 1 else prompts,
                                      len(arrays)))  # fmt: skip
        return [self.by_length[len(a)][1 if p else 0] for a, p in zip(arrays, prompts)]


def _write_split(work, name, items, first_length):
    audio_dir = work / "normalize" / "audio" / name
    audio_dir.mkdir(parents=True, exist_ok=True)
    records, by_length = [], {}
    for k, (utt_id, (ref, hyp, hyp_prompt)) in enumerate(items.items()):
        length = first_length + 1600 * k  # distinct lengths identify the clips
        rng = np.random.default_rng(length)
        soundfile.write(audio_dir / f"{utt_id}.wav", 0.01 * rng.standard_normal(length), SAMPLE_RATE, subtype="PCM_16")
        records.append(Record(utt_id, f"audio/{name}/{utt_id}.wav", length / SAMPLE_RATE, ref))
        by_length[length] = (hyp, hyp_prompt)
    write_manifest(work / "normalize" / f"{name}.jsonl", records)
    return by_length


@pytest.fixture
def project(tmp_path, tiny_whisper_dir, monkeypatch):
    work = tmp_path / "work"
    by_length = _write_split(work, "test", TEST, 8000)
    by_length |= _write_split(work, "test_general", GENERAL, 20000)
    train = [Record(f"r{i}", "audio/none.wav", 1.0, text) for i, text in enumerate(TRAIN)]
    write_manifest(work / "normalize" / "train.jsonl", train)
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("\n".join(LEXICON_TERMS) + "\n")
    config = config_from_dict({
        "name": "evaltest", "work_dir": str(work), "lexicon": str(lexicon),
        "model": {"base": str(tiny_whisper_dir)},
        "evaluate": {"bootstrap_samples": 100, "max_new_tokens": 4,
                     "systems": ["base", "base+prompt", "adapted", "adapted+prompt"]},
    })  # fmt: skip
    FakeTranscriber.calls, FakeTranscriber.encoded = [], []
    FakeTranscriber.by_length = by_length
    monkeypatch.setattr("pipeline.inference.hf.Transcriber", FakeTranscriber)
    return config


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_base_systems_end_to_end_match_hand_computed_metrics(project, capsys):
    runner.run_stage(project, "evaluate")
    out = project.stage_dir("evaluate")
    report = json.loads((out / "report.json").read_text())
    assert report["systems"] == ["base", "base+prompt"]
    assert any("train stage has not run" in note for note in report["notes"])
    # the prompt: terms by train frequency (pneumothorax 2, pleural effusion 1), then alphabetical
    assert report["prompt"]["text"] == "pneumothorax, pleural effusion, bibasilar atelectasis"
    assert {c[1] for c in FakeTranscriber.calls} == {None, report["prompt"]["text"]}
    rows = {r["system"]: r for r in report["headline"]["rows"]}
    # base on test: plural (S) + by basilar (S + I) = 3 errors / 11 words; general: old (S) = 1 / 4
    assert rows["base"]["wer"] == pytest.approx(3 / 11)
    assert rows["base"]["b_wer"] == pytest.approx(2 / 4)  # pleural, effusion, bibasilar, atelectasis
    assert rows["base"]["u_wer"] == pytest.approx(1 / 7)
    assert (rows["base"]["term_error"], rows["base"]["term_f1"]) == (1.0, 0.0)
    assert rows["base"]["general_wer"] == pytest.approx(1 / 4)
    assert rows["base+prompt"] == {"system": "base+prompt", "wer": 0.0, "b_wer": 0.0, "u_wer": 0.0,
                                   "term_f1": 1.0, "term_error": 0.0, "general_wer": 0.0}  # fmt: skip
    transcripts = _rows(out / "transcripts" / "base" / "test.jsonl")
    assert [r["id"] for r in transcripts] == ["t1", "t2", "t3"]
    assert transcripts[1] == {"id": "t2", "hyp": "By basilar atelectasis is seen.",
                              "hyp_norm": "by basilar atelectasis is seen",
                              "ref_norm": "bibasilar atelectasis is seen", "context_terms": []}  # fmt: skip
    assert (out / "transcripts" / "base+prompt" / "test_general.jsonl").is_file()
    for name in ("metrics.png", "terms.png"):
        assert (out / name).read_bytes().startswith(PNG_SIGNATURE)
    assert "| base | 27.3 | 50.0 | 14.3 | 0.0 | 100.0 | 25.0 |" in (out / "report.md").read_text()
    printed = capsys.readouterr().out
    assert "| base+prompt | 0.0 | 0.0 | 0.0 | 100.0 | 0.0 | 0.0 |" in printed
    assert not any(word in printed.lower() for word in SECRET_WORDS)


def test_rerun_reuses_cached_base_transcripts_and_decodes_only_the_adapted_model(project, tiny_whisper_dir):
    runner.run_stage(project, "evaluate")
    assert len(FakeTranscriber.calls) == 4  # 2 systems x 2 splits
    assert FakeTranscriber.encoded == [3, 1], "base+prompt decodes from base's encoder states"
    states = sorted(p.name for p in (project.stage_dir("evaluate") / systems.ENCODER_STATES_DIR).glob("*.npy"))
    assert len(states) == 2  # one per split
    runner.run_stage(project, "evaluate")
    assert len(FakeTranscriber.calls) == 4, "nothing changed: every transcript comes from the cache"
    shutil.copytree(tiny_whisper_dir, project.stage_dir("train") / "merged")  # as if train had run
    runner.run_stage(project, "evaluate")
    assert [c[0] for c in FakeTranscriber.calls[4:]] == ["merged"] * 4, "base transcripts were reused"
    assert FakeTranscriber.encoded == [3, 1], "the adapted model (same encoder) reads the stored states"
    assert sorted(p.name for p in (project.stage_dir("evaluate") / systems.ENCODER_STATES_DIR).glob("*.npy")) == states
    report = json.loads((project.stage_dir("evaluate") / "report.json").read_text())
    assert report["systems"] == ["base", "base+prompt", "adapted", "adapted+prompt"]
    assert report["terms"]["after"] == "adapted" and not report["notes"]
    assert {(c["system"], c["split"]) for c in report["comparisons"]} >= {("adapted", "test"), ("adapted", "test_general")}
    beams = config_from_dict({**config_to_dict(project), "evaluate": {**config_to_dict(project.evaluate), "num_beams": 2}})
    runner.run_stage(beams, "evaluate")
    assert len(FakeTranscriber.calls) == 16, "other decoding options: every system is decoded again"


def test_share_encoder_states_false_encodes_with_every_system_and_stores_nothing(project, monkeypatch):
    decoded = []

    def transcribe(self, arrays, prompt=None, progress=False, encoder_states=None):
        decoded.append(encoder_states)
        return [self.by_length[len(a)][1 if p else 0] for a, p in zip(arrays, prompt)]

    monkeypatch.setattr(FakeTranscriber, "transcribe", transcribe)
    off = config_from_dict({**config_to_dict(project), "evaluate": {**config_to_dict(project.evaluate),
                                                                    "share_encoder_states": False}})  # fmt: skip
    runner.run_stage(off, "evaluate")
    assert len(decoded) == 4 and all(states is None for states in decoded) and not FakeTranscriber.encoded
    assert not (project.stage_dir("evaluate") / systems.ENCODER_STATES_DIR).exists()


def test_unusable_records_are_rejected_with_their_reason(project):
    manifest = project.stage_dir("normalize") / "test.jsonl"
    lines = manifest.read_text().splitlines()
    lines.append(json.dumps({"id": "t9", "audio_filepath": "audio/test/missing.wav", "duration": 1.0, "text": "x"}))
    lines.append(json.dumps({"id": "t8", "audio_filepath": "audio/test/t1.wav", "duration": 45.0, "text": "x"}))
    lines.append(json.dumps({"id": "t1", "audio_filepath": "audio/test/t1.wav", "duration": 1.0, "text": "x"}))
    manifest.write_text("\n".join(lines) + "\n")
    splits, rejects = systems.load_splits(project)
    assert [r.id for r in splits[0].records] == ["t1", "t2", "t3"]
    assert [(r.id, r.line) for r in rejects] == [("t9", 4), ("t8", 5), ("t1", 6)]
    assert [r.reason.split()[0] for r in rejects] == ["audio", "longer", "duplicate"]


def test_extra_manifests_from_the_command_line(project, tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(config_to_dict(project)))
    parser = cli.build_parser()
    args = parser.parse_args(["evaluate", str(config_file), "--manifest", "a/extra.jsonl", "--manifest", "b.jsonl"])
    config = cli._load_config(args)
    assert config.evaluate.manifests == ("a/extra.jsonl", "b.jsonl")
    assert load_config(config_file).evaluate.manifests == ()
    records = read_manifest(project.stage_dir("normalize") / "test.jsonl")
    absolute = [r.replace(audio_filepath=str(project.stage_dir("normalize") / r.audio_filepath)) for r in records]
    write_manifest(tmp_path / "test.jsonl", absolute)  # same name as a split: gets a distinct one
    with_extra = config_from_dict({**config_to_dict(project), "evaluate": {"manifests": [str(tmp_path / "test.jsonl")]}})
    splits, _ = systems.load_splits(with_extra)
    assert [s.name for s in splits] == ["test", "test_general", "test_extra"]


def test_an_extra_manifest_without_lexicon_terms_is_a_general_split(project, tmp_path):
    """A larger plain-English check passed with --manifest must not headline as the domain split."""
    extra = []
    for name in ("test", "test_general"):
        records = read_manifest(project.stage_dir("normalize") / f"{name}.jsonl")
        extra.append(tmp_path / f"more_{name}.jsonl")
        write_manifest(extra[-1], [r.replace(audio_filepath=str(project.stage_dir("normalize") / r.audio_filepath))
                                   for r in records])  # fmt: skip
    config = config_from_dict({**config_to_dict(project), "evaluate": {"manifests": [str(p) for p in extra]}})
    splits = systems.load_splits(config)[0]
    assert [(s.name, s.kind) for s in splits] == [("test", "domain"), ("test_general", "general"),
                                                  ("more_test", "domain"), ("more_test_general", "general")]  # fmt: skip
    config = config_from_dict({**config_to_dict(config), "evaluate": {"splits": ["test_general"],
                                                                      "manifests": [str(p) for p in extra[::-1]]}})  # fmt: skip
    assert systems.report_options(config, systems.load_splits(config)[0]).domain_split == "more_test"


def test_a_missing_split_says_which_stage_to_run(project):
    (project.stage_dir("normalize") / "test_general.jsonl").unlink()
    with pytest.raises(systems.DictuneError, match="run `dictune normalize CONFIG` first"):
        systems.load_splits(project)


def test_no_transcript_text_in_logs_at_info(project, tiny_whisper_dir, monkeypatch, caplog, capsys):
    monkeypatch.undo()  # the real transcriber on the tiny random model
    logger = logging.getLogger("dictune")
    logger.addHandler(caplog.handler)  # the CLI may have turned off propagation earlier in the session
    try:
        caplog.set_level(logging.INFO, logger="dictune")
        runner.run_stage(project, "evaluate")
    finally:
        logger.removeHandler(caplog.handler)
    assert "evaluate: transcribing test with base" in caplog.text  # the check below sees the stage's logs
    out = project.stage_dir("evaluate")
    hyps = {r["hyp"] for system in ("base", "base+prompt") for r in _rows(out / "transcripts" / system / "test.jsonl")}
    logged = caplog.text.lower() + capsys.readouterr().out.lower()
    assert not any(word in logged for word in SECRET_WORDS)
    assert not any(h and h.lower() in logged for h in hyps)


def test_retrieved_context_comes_from_the_first_pass_and_new_words_split_seen_from_unseen(project):
    """base+retrieved: each utterance's context holds the lexicon terms closest to base's own hypothesis
    ("plural effusion" -> pleural effusion), so utterances get different contexts; the report splits the
    lexicon by the training text (pneumothorax, pleural effusion seen; bibasilar atelectasis unseen)."""
    systems = {**config_to_dict(project.evaluate), "systems": ["base", "base+retrieved"]}
    config = config_from_dict({**config_to_dict(project), "evaluate": systems})
    runner.run_stage(config, "evaluate")
    out = config.stage_dir("evaluate")
    rows = {r["id"]: r for r in _rows(out / "transcripts" / "base+retrieved" / "test.jsonl")}
    assert "pleural effusion" in rows["t1"]["context_terms"]
    assert "bibasilar atelectasis" in rows["t2"]["context_terms"]
    assert rows["t3"]["context_terms"] == []  # nothing close to "the heart is normal": no context at all
    report = json.loads((out / "report.json").read_text())
    block = report["new_words"]
    assert (block["seen_terms"], block["unseen_terms"]) == (2, 1)
    by = {(r["split"], r["system"]): r for r in block["rows"]}
    assert by[("test", "base")]["b_wer_unseen"] == pytest.approx(1 / 2)  # "by" for "bibasilar"
    assert by[("test", "base+retrieved")]["b_wer_unseen"] == 0.0
    assert by[("test", "base")]["b_wer_seen"] == pytest.approx(1 / 2)  # plural for pleural
    retrieval = block["retrieval"]["base+retrieved"]["test"]
    assert retrieval["recall"] == 1.0 and retrieval["occurrences"] == 2
    assert retrieval["audio_seconds"] == pytest.approx(sum(r.duration for r in read_manifest(
        project.stage_dir("normalize") / "test.jsonl")))  # fmt: skip
    md = (out / "report.md").read_text()
    assert "## New words" in md and "| RTF first pass |" in md


def test_irrelevant_context_takes_terms_of_another_exam_type(project):
    lexicon = evaluate_lexicon(project)
    train = [Record("a", "x.wav", 1.0, "No pneumothorax.", extra={"modality": "chest"}),
             Record("b", "x.wav", 1.0, "Bibasilar atelectasis.", extra={"modality": "abdomen"})]  # fmt: skip
    write_manifest(project.stage_dir("normalize") / "train.jsonl", train)
    records = [Record("t", "x.wav", 1.0, "Small pneumothorax.", extra={"modality": "chest"}),
               Record("u", "x.wav", 1.0, "Anything.")]  # fmt: skip
    from pipeline.context import irrelevant_contexts

    assert irrelevant_contexts(lexicon, project, records, 10) == [["bibasilar atelectasis"], []]


def evaluate_lexicon(config):
    from pipeline.lexicon import load_lexicon

    return load_lexicon(config.lexicon)


def test_report_counts_clinical_errors_for_every_system(project):
    runner.run_stage(project, "evaluate")
    out = project.stage_dir("evaluate")
    report = json.loads((out / "report.json").read_text())
    for split in ("test", "test_general"):
        for system in ("base", "base+prompt"):
            clinical = report["results"][split][system]["clinical"]
            assert clinical["total"] == 0 and clinical["grouped_by_report_id"] is False  # no pieces: no ids
    assert {c["metric"] for c in report["clinical"]["comparisons"]} == {"clinical_errors", "clinical_report_share"}
    md = (out / "report.md").read_text()
    assert "## Clinical errors" in md and "each utterance is counted as its own report" in md
    assert "| test | base | 3 | 3 | 0 | 0 | 0 | 0.0 | 0.0 | – | – |" in md


def test_pieces_of_one_dictation_are_counted_as_one_report(project, tmp_path):
    refs = ["No pneumothorax.", "Left effusion.", "A 5 mm nodule."]
    records = [Record(f"p{k}", "a.wav", 1.0, text, extra={"parent_id": "dictation-1"}) for k, text in enumerate(refs)]
    records.append(Record("single", "b.wav", 1.0, "No effusion."))
    split = systems.Split("test", tmp_path / "test.jsonl", tuple(records), "domain")
    hyps = {"base": {"test": ["pneumothorax", "right effusion", "a 5 mm nodule", "no effusion"]}}
    clinical = systems.score_all(project, [split], hyps)["test"]["base"].clinical
    assert (clinical.utterances, clinical.reports, clinical.reports_with_error) == (4, 2, 1)
    assert [(r.report, r.utterances, r.counts.total) for r in clinical.per_report] == [
        ("dictation-1", 3, 2), ("single", 1, 0)]  # fmt: skip
