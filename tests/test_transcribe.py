"""`dictune transcribe`: chunking, outputs, bad input, adapters, both engines (tiny random Whisper; the real
tiny.en only in the integration tests)."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
import soundfile as sf
from lora_adapters import make_lora_adapter, make_other_whisper

from pipeline.cli import main
from pipeline.config import ContextConfig, TranscribeConfig
from pipeline.errors import DictuneError
from pipeline.inference.batch import collect_inputs, transcribe_files
from pipeline.inference.engines import Segment
from pipeline.inference.longform import Chunk, chunk_audio, pack_regions, transcribe_group
from pipeline.inference.subtitles import srt_text, timestamp, vtt_text

SR = 16000
PAUSE_SECONDS = 1.0  # between the clips of a long recording
AGREEMENT_MAX_WER = 0.02  # hf vs ct2 (float32) transcripts of the same audio
REFERENCE_MAX_WER = 0.15  # tiny.en on clean espeak-ng sentences


class FakeEngine:
    """Returns 'chunk <n>' for each chunk and records the batches it was given."""

    name = "fake"
    model_path = None

    def __init__(self, text: str | None = None):
        self.calls: list[list[int]] = []
        self.text = text

    def decode_chunks(self, chunks, prompt):
        self.calls.append([len(c) for c in chunks])
        self.prompt = prompt
        return [self.text or f"chunk {len(c)}" for c in chunks]

    def decode_sequential(self, audio, prompt):
        return [Segment(0.0, len(audio) / SR, self.text or "whole")]

    def prompt_tokens(self, text):
        return text.split()

    def max_prompt_tokens(self):
        return 5

    def describe(self):
        return {"engine": self.name}


@pytest.fixture(scope="module")
def long_recording(speech_clips, tmp_path_factory):
    """The ten clips one after another with a pause between: (path, audio, reference text)."""
    pause = np.zeros(int(PAUSE_SECONDS * SR), np.float32)
    audio = np.concatenate([part for clip in speech_clips for part in (clip.audio, pause)])
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, audio, SR, subtype="PCM_16")
    return path, audio, " ".join(clip.text for clip in speech_clips)


# ---------------------------------------------------------------------------------------------- chunking


def test_pack_regions_respects_the_limit():
    regions = [(0, 100), (150, 400), (420, 900), (1000, 1100), (1200, 3700)]
    chunks = pack_regions(regions, limit=1000, total=3500)
    # three regions packed; the fourth would overflow; the last, clipped to the audio, is cut hard
    assert chunks == [
        Chunk(0, 900),
        Chunk(1000, 1100),
        Chunk(1200, 2200),
        Chunk(2200, 3200),
        Chunk(3200, 3500),
    ]
    assert pack_regions([(0, 400), (500, 900)], limit=1000, total=900) == [Chunk(0, 900)]


def test_long_recording_is_cut_at_pauses_into_chunks(long_recording):
    _, audio, _ = long_recording
    options = TranscribeConfig(max_chunk_seconds=12.0)
    chunks = chunk_audio(audio, options)
    assert len(chunks) >= len(audio) / SR / 12.0
    assert all(0 < c.seconds <= 12.0 for c in chunks)
    assert all(a.end <= b.start for a, b in itertools.pairwise(chunks))
    # every cut lies in a pause: the audio around each boundary is silent
    for a, b in itertools.pairwise(chunks):
        gap = audio[a.end - 160 : b.start + 160]
        assert np.abs(gap).max() < 0.05
    assert chunk_audio(np.zeros(SR * 5, np.float32), options) == []  # silence: nothing to decode


def test_chunks_of_several_files_share_batches(long_recording, speech_clips):
    _, audio, _ = long_recording
    engine = FakeEngine()
    options = TranscribeConfig(max_chunk_seconds=12.0)
    arrays = [speech_clips[0].audio, audio, np.zeros(SR, np.float32), speech_clips[1].audio]
    segments = transcribe_group(engine, arrays, options)
    assert len(engine.calls) == 1  # one decode call for the whole group
    assert len(segments[0]) == 1 and segments[2] == [] and len(segments[1]) >= 3
    for array, segs in zip(arrays, segments):
        for seg in segs:  # each text went back to its own file and chunk
            assert seg.text == f"chunk {round((seg.end - seg.start) * SR)}"
            assert 0 <= seg.start < seg.end <= len(array) / SR


# ---------------------------------------------------------------------------------------------- outputs


def test_subtitle_formats():
    cues = [(0.0, 2.5, "Findings: clear.\n\nImpression: normal."), (2.5, 3.0, "  "), (3661.0019, 3662.5, "x")]
    assert timestamp(3661.0019) == "01:01:01,002"
    assert srt_text(cues) == (
        "1\n00:00:00,000 --> 00:00:02,500\nFindings: clear.\nImpression: normal.\n\n"
        "2\n01:01:01,002 --> 01:01:02,500\nx\n"
    )
    assert vtt_text(cues).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nFindings: clear.\n")


def test_outputs_render_dictation_commands(speech_clips, tmp_path):
    spoken = "the lungs are clear period new paragraph impression colon no acute findings period"
    summary = transcribe_files([str(speech_clips[0].path)], tmp_path, "fake", engine=FakeEngine(spoken))
    assert summary.transcribed == 1 and summary.failed == 0 and summary.audio_seconds > 1
    report = (tmp_path / "clip_00.txt").read_text()
    assert report == "The lungs are clear.\n\nImpression: No acute findings.\n"
    record = json.loads((tmp_path / "clip_00.json").read_text())
    assert record["text"] == "The lungs are clear.\n\nImpression: No acute findings."
    assert record["segments"][0]["text"] == spoken and record["options"]["long_form"] == "vad"
    assert 0 <= record["segments"][0]["start"] < record["segments"][0]["end"] <= record["duration"]
    assert "Impression: No acute findings." in (tmp_path / "clip_00.srt").read_text()
    assert (tmp_path / "clip_00.vtt").read_text().startswith("WEBVTT")
    assert (tmp_path / "rejects.jsonl").read_text() == ""


def test_static_context_terms_fill_the_token_budget(speech_clips, tmp_path):
    lexicon = tmp_path / "terms.txt"
    lexicon.write_text("# terms\npleural effusion\natelectasis\npneumothorax\nhydronephrosis grade\n")
    engine = FakeEngine()  # one token per word, a budget of 5
    context = ContextConfig(mode="static", terms_file=str(lexicon))
    transcribe_files([str(speech_clips[0].path)], tmp_path / "out", "fake", engine=engine, context=context)
    assert engine.prompt == "pleural effusion, atelectasis, pneumothorax"
    record = json.loads((tmp_path / "out" / "clip_00.json").read_text())
    assert record["context"]["mode"] == "static" and record["context"]["static_terms"] == 3


@pytest.mark.parametrize("content, message", [(None, "not found"), (b"", "is empty"), (b"  \n", "is empty"),
                                              (b"pleural \xff\xfe effusion", "not UTF-8")])  # fmt: skip
def test_a_bad_context_file_stops_before_anything_is_transcribed(speech_clips, tmp_path, content, message):
    path = tmp_path / "context.txt"
    if content is not None:
        path.write_bytes(content)
    engine = FakeEngine()
    for context in (ContextConfig(mode="static", terms_file=str(path)), ContextConfig(mode="static", text_file=str(path))):
        with pytest.raises(DictuneError, match=message) as error:
            transcribe_files([str(speech_clips[0].path)], tmp_path / "out", "fake", engine=engine, context=context)
        assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert engine.calls == [] and not (tmp_path / "out" / "clip_00.txt").exists()


def test_a_manifest_line_brings_its_own_static_context(speech_clips, tmp_path):
    """context_terms / context_text of a manifest line replace the global static context for that file only;
    a line with a malformed context is rejected alone; context lines under context none stop the batch."""
    terms = tmp_path / "chest.txt"
    terms.write_text("pleural effusion\n")
    audio = str(speech_clips[0].path)
    manifest = tmp_path / "m.jsonl"
    rows = [{"id": "own-terms", "audio_filepath": audio, "context_terms": ["hydronephrosis", " "]},
            {"id": "global", "audio_filepath": audio},
            {"id": "prior", "audio_filepath": audio, "context_text": "the prior report said a small nodule"},
            {"id": "bad", "audio_filepath": audio, "context_terms": "not a list"}]  # fmt: skip
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    engine = FakeEngine()
    context = ContextConfig(mode="static", terms_file=str(terms))
    summary = transcribe_files([str(manifest)], tmp_path / "out", "fake", engine=engine, context=context)
    assert (summary.transcribed, summary.failed) == (3, 1)
    assert engine.prompt == ["hydronephrosis", "pleural effusion", "report said a small nodule"]  # its end
    reject = json.loads((tmp_path / "out" / "rejects.jsonl").read_text())
    assert reject["line"] == 4 and "context_terms" in reject["reason"]
    with pytest.raises(DictuneError, match="context mode is none"):
        transcribe_files([str(manifest)], tmp_path / "out2", "fake", engine=FakeEngine())
    alone = ContextConfig(mode="static")  # no global list: every input must bring its own
    with pytest.raises(DictuneError, match="1 of 3 inputs"):
        transcribe_files([str(manifest)], tmp_path / "out3", "fake", engine=FakeEngine(), context=alone)


def test_retrieved_context_decodes_each_chunk_again_with_its_own_terms(long_recording, tmp_path):
    """Every window gets the lexicon terms closest to its own first-pass text."""
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("pleural effusion\nhydronephrosis\npneumothorax\n")

    class TwoPass(FakeEngine):
        def decode_chunks(self, chunks, prompt):
            self.calls.append(prompt)
            if prompt is None:  # first pass: sound-alikes, a different one per chunk
                return ["no plural effusion" if i % 2 == 0 else "no hydro nephrosis" for i in range(len(chunks))]
            return [f"second {p}" for p in prompt]

        def max_prompt_tokens(self):
            return 50

    engine = TwoPass()
    path, _, _ = long_recording
    context = ContextConfig(mode="retrieved", min_score=70)
    transcribe_files([str(path)], tmp_path / "out", "fake", lexicon=lexicon, engine=engine, context=context)
    assert len(engine.calls) == 2 and engine.calls[0] is None
    second = engine.calls[1]
    assert len(second) >= 2 and second[0].startswith("pleural effusion") and second[1].startswith("hydronephrosis")
    record = json.loads((tmp_path / "out" / path.with_suffix(".json").name).read_text())
    assert record["context"]["mode"] == "retrieved"
    assert record["segments"][0]["text"].startswith("second pleural effusion")


def test_manifest_inputs_and_unique_names(speech_clips, tmp_path):
    manifest = tmp_path / "sub" / "m.jsonl"
    manifest.parent.mkdir()
    rows = [{"audio_filepath": str(speech_clips[0].path)}, {"id": "a/b", "audio_filepath": "../x.wav"},
            {"text": "no audio"}, {"audio_filepath": str(speech_clips[0].path)}]  # fmt: skip
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, rejects = collect_inputs([str(speech_clips[0].path), str(manifest), str(tmp_path / "gone.jsonl")])
    assert [i.name for i in items] == ["clip_00", "clip_00-2", "a_b", "clip_00-3"]
    assert items[2].audio == manifest.parent / "../x.wav" and items[2].line == 2
    assert [(r.line, "no audio_filepath" in r.reason) for r in rejects[:1]] == [(3, True)]
    assert "manifest not found" in rejects[1].reason


# ---------------------------------------------------------------------------------------------- CLI


def test_bad_inputs_are_rejected_one_line_each(tiny_whisper_dir, speech_clips, tmp_path, capsys):
    bad = {"missing": tmp_path / "missing.wav", "empty": tmp_path / "empty.wav",
           "unsupported": tmp_path / "notes.txt", "corrupt": tmp_path / "corrupt.flac"}  # fmt: skip
    bad["empty"].write_bytes(b"")
    bad["unsupported"].write_text("not audio\n")
    bad["corrupt"].write_bytes(b"fLaC" + bytes(range(256)) * 8)  # unreadable: not a decodable stream
    good = speech_clips[0].path
    out = tmp_path / "out"
    args = [str(bad["missing"]), str(good), str(bad["empty"]), str(bad["unsupported"]), str(bad["corrupt"])]
    capsys.readouterr()
    code = main(["transcribe", "--model", str(tiny_whisper_dir), "--engine", "hf", "--format", "txt,json",
                 "--out", str(out), *args])  # fmt: skip
    err = [line for line in capsys.readouterr().err.splitlines() if re.match(r"dictune E ", line)]
    assert code == 1
    assert len(err) == 4  # one line per bad file
    for key, expected in [("missing", "file not found"), ("empty", "empty file"),
                          ("unsupported", "unsupported format .txt"), ("corrupt", "cannot decode")]:  # fmt: skip
        assert any(str(bad[key]) in line and expected in line for line in err), key
    # the good file was transcribed
    assert (out / "clip_00.txt").is_file() and (out / "clip_00.json").is_file()
    assert not (out / "clip_00.srt").exists()  # only the formats asked for
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert sorted(r["audio_filepath"] for r in rejects) == sorted(str(p) for p in bad.values())


def test_adapter_for_another_model_is_refused(tiny_whisper_dir, speech_clips, tmp_path, capsys):
    other = make_other_whisper(tiny_whisper_dir, tmp_path / "other")
    adapter = make_lora_adapter(other, tmp_path / "adapter")
    capsys.readouterr()
    for engine in ("hf", "ct2"):
        code = main(["transcribe", "--model", str(tiny_whisper_dir), "--adapter", str(adapter), "--engine", engine,
                     "--out", str(tmp_path / engine), str(speech_clips[0].path)])  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert len(err) == 1 and "does not match the base model" in err[0] and "--model" in err[0]
        assert not (tmp_path / engine / "clip_00.txt").exists()


def test_ct2_engine_exports_an_adapted_model_once(tiny_whisper_dir, speech_clips, tmp_path, caplog):
    pytest.importorskip("faster_whisper")
    from pipeline.inference.engines import load_engine

    adapter = make_lora_adapter(tiny_whisper_dir, tmp_path / "adapter")
    options = TranscribeConfig(engine="ct2", threads=1, max_new_tokens=8)
    first = load_engine(str(tiny_whisper_dir), adapter, options)
    assert (first.model_path / "model.bin").is_file() and "exports" in first.model_path.parts
    stamp = (first.model_path / "model.bin").stat().st_mtime_ns
    second = load_engine(str(tiny_whisper_dir), adapter, options)
    assert (
        second.model_path == first.model_path
        and (second.model_path / "model.bin").stat().st_mtime_ns == stamp
    )
    summary = transcribe_files([str(speech_clips[1].path)], tmp_path / "out", str(tiny_whisper_dir), adapter,
                               options, engine=second)  # fmt: skip
    assert summary.transcribed == 1 and json.loads((tmp_path / "out" / "clip_01.json").read_text())["engine"][
        "engine"] == "ct2"  # fmt: skip


# ---------------------------------------------------------------------------------------------- real tiny.en


def _wer(ref: str, hyp: str) -> float:
    from pipeline.metrics import score

    return score([ref], [hyp]).wer.rate


@pytest.mark.integration
def test_engines_agree_and_transcribe_long_audio(long_recording, tmp_path):
    path, _, reference = long_recording
    texts = {}
    for engine, extra in (("hf", []), ("ct2", ["--compute-type", "float32"])):
        out = tmp_path / engine
        assert main(["transcribe", "--model", "tiny.en", "--engine", engine, "--threads", "1", "--out", str(out),
                     "--max-chunk-seconds", "15", *extra, str(path)]) == 0  # fmt: skip
        record = json.loads((out / "long.json").read_text())
        assert len(record["segments"]) >= 3  # ~45 s in <= 15 s chunks
        texts[engine] = record["spoken"]
        assert _wer(reference, texts[engine]) <= REFERENCE_MAX_WER, engine
    assert _wer(texts["hf"], texts["ct2"]) <= AGREEMENT_MAX_WER


@pytest.mark.integration
@pytest.mark.parametrize("engine", ["hf", "ct2"])
def test_sequential_long_form(engine, long_recording, tmp_path):
    path, audio, reference = long_recording
    options = TranscribeConfig(engine=engine, long_form="sequential", threads=1)
    summary = transcribe_files([str(path)], tmp_path, "tiny.en", options=options)
    record = json.loads((tmp_path / "long.json").read_text())
    starts = [s["start"] for s in record["segments"]]
    assert summary.transcribed == 1 and len(starts) >= 5 and starts == sorted(starts)
    assert record["segments"][-1]["end"] <= len(audio) / SR + 0.5
    assert _wer(reference, record["spoken"]) <= REFERENCE_MAX_WER
