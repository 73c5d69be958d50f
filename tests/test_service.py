"""`dictune serve`: the OpenAI-compatible API through the official client, bad input, tokens, the work
queue, the corrections store (crash safety) and ingest of corrections (tiny random Whisper, a real server
on a loopback port)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from pipeline.errors import DictuneError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A uvicorn server on a free loopback port, in a thread."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(300):  # the server starts in well under 30 s; bounded either way
            if self.server.started:
                return
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def write_config(tmp_path: Path, model_dir: Path, lexicon: Path | None = None, max_new_tokens: int = 8,
                 **serve) -> Path:  # fmt: skip
    data = {"name": "serve-test", "work_dir": str(tmp_path / "work"), "model": {"base": str(model_dir)},
            "transcribe": {"engine": "hf", "max_new_tokens": max_new_tokens}, "serve": serve}  # fmt: skip
    if lexicon is not None:
        data["lexicon"] = str(lexicon)
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def start(tmp_path: Path, model_dir: Path, token: str | None = None, **settings):
    from pipeline.tools.serve import build

    config = write_config(tmp_path, model_dir, **settings)
    args = argparse.Namespace(config=str(config), model=None, adapter=None, host=None, port=None, token=token)
    app, _, _ = build(args)
    return Running(app)


@pytest.fixture
def server(tmp_path, tiny_whisper_dir):
    running = start(tmp_path, tiny_whisper_dir, max_upload_mb=0.2, max_seconds=20.0)
    yield running
    running.close()


def test_openai_client_transcribes_a_clip_as_the_project_does(server, tmp_path, tiny_whisper_dir, speech_clips):
    from openai import OpenAI

    from pipeline.config import load_config
    from pipeline.service.profiles import Profiles

    client = OpenAI(base_url=server.url + "/v1", api_key="unused-on-loopback", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list()] == ["default"]
    clip = speech_clips[0]
    with open(clip.path, "rb") as handle:
        result = client.audio.transcriptions.create(model="default", file=handle)
    config = load_config(tmp_path / "serve.yaml")
    direct = Profiles(config, str(tiny_whisper_dir), None, {}, 1).transcribe("default", clip.audio)
    assert result.text == direct.text  # the same decode path as `dictune transcribe`
    with open(clip.path, "rb") as handle:
        verbose = client.audio.transcriptions.create(model="default", file=handle, response_format="verbose_json")
    assert verbose.text == direct.text and abs(verbose.duration - len(clip.audio) / 16000) < 0.01
    with open(clip.path, "rb") as handle:
        plain = client.audio.transcriptions.create(model="default", file=handle, response_format="text")
    assert plain.strip() == direct.text


def test_verbose_json_carries_low_confidence_spans_of_the_text(tmp_path, tiny_whisper_dir, speech_clips):
    from pipeline.config import ServeConfig

    assert ServeConfig(low_confidence=1.5).problems() == [
        "serve.low_confidence: must be a probability in [0, 1] (0 = off, e.g. 0.5)"
    ]
    running = start(tmp_path, tiny_whisper_dir, low_confidence=1.0)  # 1: every placed word is marked
    try:
        wav = speech_clips[0].path.read_bytes()
        result = _post(running.url, "clip.wav", wav, response_format="verbose_json").json()
        plain = _post(running.url, "clip.wav", wav, response_format="json").json()
    finally:
        running.close()
    text, spans = result["text"], result["low_confidence"]
    assert text == plain["text"] and text.strip() and spans  # the same text as without the spans
    for span in spans:
        assert 0 <= span["start"] < span["end"] <= len(text) and text[span["start"] : span["end"]] == span["word"]
        assert 0.0 < span["probability"] <= 1.0 and span["corrected"] is False
    assert all(a["end"] <= b["start"] for a, b in zip(spans, spans[1:]))  # noqa: RUF007


def _post(url: str, name: str, data: bytes, **fields) -> httpx.Response:
    return httpx.post(url + "/v1/audio/transcriptions", files={"file": (name, data)}, data=fields, timeout=60)


def test_bad_input_gets_a_one_line_json_error_and_the_server_keeps_serving(server, speech_clips, tmp_path):
    wav = speech_clips[0].path.read_bytes()
    long_wav = tmp_path / "long.wav"
    import numpy as np
    import soundfile

    soundfile.write(long_wav, np.zeros(16000 * 25, np.float32), 16000)
    cases = [
        (_post(server.url, "empty.wav", b""), 400, "empty file"),
        (_post(server.url, "notes.wav", b"this is a text file, not audio\n" * 20), 400, "cannot decode"),
        (_post(server.url, "a.wav", wav, model="dr-nobody"), 404, "model 'dr-nobody' not found"),
        (_post(server.url, "a.wav", wav, response_format="docx"), 400, "response_format"),
        (_post(server.url, "long.wav", long_wav.read_bytes()), 413, "over serve.max_upload_mb"),
        (httpx.post(server.url + "/v1/audio/transcriptions", data={"model": "default"}, timeout=60), 400, "file"),
    ]

    def streamed():  # a 2 GB upload with no length given: refused when the limit is passed
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(2048):
            yield b"\0" * (1 << 20)

    big = httpx.post(server.url + "/v1/audio/transcriptions", content=streamed(),
                     headers={"content-type": "multipart/form-data; boundary=x"}, timeout=60)  # fmt: skip
    cases.append((big, 413, "over serve.max_upload_mb"))
    broken = httpx.post(server.url + "/v1/audio/transcriptions", content=b"not multipart at all",
                        headers={"content-type": "multipart/form-data; boundary=x"}, timeout=60)  # fmt: skip
    cases.append((broken, 400, "multipart"))
    for response, status, words in cases:
        body = response.json()
        assert response.status_code == status and words in body["error"]["message"], body
        assert "\n" not in body["error"]["message"]
    assert _post(server.url, "a.wav", wav).status_code == 200


def test_duration_limit_and_tokens(tmp_path, tiny_whisper_dir, speech_clips):
    from pipeline.tools.serve import check_bind

    running = start(tmp_path, tiny_whisper_dir, token="s3cret", max_seconds=0.5)
    try:
        wav = speech_clips[0].path.read_bytes()
        assert httpx.get(running.url + "/v1/models").status_code == 401
        assert httpx.get(running.url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(running.url + "/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "default"
        assert httpx.get(running.url + "/").status_code == 200  # the page holds no data; its calls need the token
        long = httpx.post(running.url + "/v1/audio/transcriptions", files={"file": ("a.wav", wav)},
                          headers={"Authorization": "Bearer s3cret"}, timeout=60)  # fmt: skip
        assert long.status_code == 413 and "over serve.max_seconds" in long.json()["error"]["message"]
    finally:
        running.close()
    with pytest.raises(DictuneError, match="needs a token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "t")
    check_bind("127.0.0.1", None)
    check_bind("::1", None)


def test_a_full_queue_answers_503_with_retry_after():
    from pipeline.service.app import ServiceError, WorkQueue

    queue = WorkQueue(workers=1, waiting=1)
    release = threading.Event()

    async def scenario():
        first = asyncio.ensure_future(queue.run(release.wait, 30))
        second = asyncio.ensure_future(queue.run(release.wait, 30))
        await asyncio.sleep(0)  # both hold their places
        with pytest.raises(ServiceError) as full:
            await queue.run(release.wait, 30)
        release.set()
        return full.value, await first, await second, await queue.run(lambda: "again")

    error, first, second, again = asyncio.run(scenario())
    assert error.status == 503 and first and second and again == "again"


def test_busy_server_answers_503_and_loses_no_request(tmp_path, tiny_whisper_dir, speech_clips):
    running = start(tmp_path, tiny_whisper_dir, workers=1, queue_size=0)
    try:
        app = running.server.config.app.app  # the FastAPI app inside the upload guard
        queue = app.state.queue
        assert queue.slots.acquire(blocking=False)  # the only worker is busy
        busy = _post(running.url, "a.wav", speech_clips[0].path.read_bytes())
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
        assert busy.json()["error"]["code"] == "queue_full"
        queue.slots.release()
        assert _post(running.url, "a.wav", speech_clips[0].path.read_bytes()).status_code == 200
    finally:
        running.close()


def test_corrections_are_stored_with_their_audio_and_ingest_reads_them(server, tmp_path, speech_clips):
    from pipeline.cli import main
    from pipeline.manifest import read_manifest

    clip = speech_clips[1]
    response = httpx.post(server.url + "/v1/corrections", files={"file": ("dictation.wav", clip.path.read_bytes())},
                          data={"model": "default", "hypothesis": "no plural effusion", "text": "No pleural effusion."},
                          timeout=60)  # fmt: skip
    assert response.status_code == 200
    store = tmp_path / "work" / "service"
    db = store / "corrections.sqlite"
    from pipeline.service.store import read_corrections

    (row,) = read_corrections(db)
    assert row.id == response.json()["id"] and row.corrected == "No pleural effusion."
    assert row.hypothesis == "no plural effusion" and row.profile == "default"
    assert hashlib.sha256((store / row.audio_path).read_bytes()).hexdigest() == row.audio_sha256
    bad = httpx.post(server.url + "/v1/corrections", files={"file": ("x.wav", clip.path.read_bytes())},
                     data={"text": "  "}, timeout=60)  # fmt: skip
    assert bad.status_code == 400 and len(read_corrections(db)) == 1
    config = tmp_path / "ingest.yaml"
    config.write_text(yaml.safe_dump({"name": "c", "work_dir": str(tmp_path / "round2"),
                                      "ingest": {"sources": [{"name": "train", "path": str(db)}]}}))  # fmt: skip
    assert main(["ingest", str(config)]) == 0
    (record,) = read_manifest(tmp_path / "round2" / "ingest" / "train.jsonl")
    assert record.text == "No pleural effusion." and record.speaker == "default"
    more = httpx.post(server.url + "/v1/corrections", files={"file": ("d2.wav", speech_clips[3].path.read_bytes())},
                      data={"text": "The heart size is normal."}, timeout=60)  # fmt: skip
    assert more.status_code == 200
    assert main(["run", str(config), "--only", "ingest"]) == 0  # a new correction: ingest is not skipped
    assert len(read_manifest(tmp_path / "round2" / "ingest" / "train.jsonl")) == 2
    config.write_text(yaml.safe_dump({"name": "c", "ingest": {"sources": [{"name": "test", "path": str(db)}]}}))
    assert main(["ingest", str(config)]) != 0  # a correction never enters a test split


def _noise_wav(seed: int) -> bytes:
    import io

    import numpy as np
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.random.default_rng(seed).uniform(-0.1, 0.1, 16000 * 4).astype(np.float32), 16000,
                    format="WAV", subtype="PCM_16")  # fmt: skip
    return buffer.getvalue()


def test_kill_9_of_the_server_while_saving_leaves_every_row_with_its_audio_and_ingest_clean(
    tmp_path, tiny_whisper_dir
):
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.cli import main
    from pipeline.manifest import read_manifest
    from pipeline.service.store import AUDIO_DIR, read_corrections
    from pipeline.tools.serve import build

    config = write_config(tmp_path, tiny_whisper_dir)
    port = _free_port()
    root = Path(__file__).parents[1]
    server = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", str(config), "--port", str(port)],
                              cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url, store = f"http://127.0.0.1:{port}", tmp_path / "work" / "service"
    stop = threading.Event()

    def client(index: int) -> int:
        sent = 0
        while not stop.is_set():
            try:
                httpx.post(url + "/v1/corrections", files={"file": ("d.wav", _noise_wav(index * 100000 + sent))},
                           data={"text": f"report {index}-{sent}"}, timeout=30)  # fmt: skip
            except httpx.HTTPError:
                time.sleep(0.05)  # not up yet, or gone
            sent += 1
        return sent

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, i) for i in range(4)]
        try:
            for _ in range(1200):  # until some rows exist (bounded: 120 s)
                time.sleep(0.1)
                with contextlib.suppress(sqlite3.Error):  # the store may be mid-checkpoint
                    if len(read_corrections(store / "corrections.sqlite")) >= 20:
                        break
        finally:
            server.send_signal(signal.SIGKILL)  # in the middle of the clients' saves
            server.wait()
            stop.set()  # before the pool waits for its clients
        [f.result() for f in futures]
    build(argparse.Namespace(config=str(config), model=None, adapter=None, host=None, port=None, token=None))
    rows = read_corrections(store / "corrections.sqlite")  # the restart above ran the store's recovery
    files = {f"{AUDIO_DIR}/{p.name}" for p in (store / AUDIO_DIR).iterdir() if p.is_file()}
    assert len(rows) >= 20 and files == {r.audio_path for r in rows}
    assert all(hashlib.sha256((store / r.audio_path).read_bytes()).hexdigest() == r.audio_sha256 for r in rows)
    ingest = tmp_path / "ingest.yaml"
    ingest.write_text(yaml.safe_dump({"name": "c", "work_dir": str(tmp_path / "round2"),
                                      "ingest": {"sources": [{"name": "train", "path": str(store / "corrections.sqlite")}]}}))  # fmt: skip
    assert main(["ingest", str(ingest)]) == 0
    assert len(read_manifest(tmp_path / "round2" / "ingest" / "train.jsonl")) == len(rows)
    assert not (tmp_path / "round2" / "ingest" / "rejects.jsonl").read_text().strip()


def test_dictune_serve_in_a_subprocess_logs_no_transcript_or_correction_text(tmp_path, tiny_whisper_dir, speech_clips):
    config = write_config(tmp_path, tiny_whisper_dir)
    port, root = _free_port(), Path(__file__).parents[1]
    log = tmp_path / "serve.log"
    with open(log, "w") as handle:
        server = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", str(config), "--port", str(port)],
                                  cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                                  stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(1200):  # bounded: 120 s
                assert server.poll() is None, log.read_text()[-2000:]
                try:
                    httpx.get(url + "/v1/models", timeout=2)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            wav = speech_clips[5].path.read_bytes()
            text = _post(url, "clip.wav", wav).json()["text"]
            saved = httpx.post(url + "/v1/corrections", files={"file": ("clip.wav", wav)},
                               data={"hypothesis": text, "text": "Quixotic zebra report."}, timeout=60)  # fmt: skip
        finally:
            server.terminate()
            server.wait(30)
    logged = log.read_text()
    assert saved.status_code == 200 and 'POST /v1/audio/transcriptions HTTP/1.1" 200' in logged
    assert "Quixotic" not in logged and "zebra" not in logged and "clip.wav" not in logged
    assert not [w for w in text.split() if len(w) > 3 and w in logged], "transcript text appeared in the log"


def test_loaded_profiles_stay_within_the_weights_budget(tmp_path, tiny_whisper_dir, speech_clips):
    import shutil

    from pipeline.config import config_from_dict
    from pipeline.service.profiles import Profiles, weights_mb

    other = tmp_path / "other"
    shutil.copytree(tiny_whisper_dir, other)
    size = weights_mb(tiny_whisper_dir)
    assert size > 1 and weights_mb(other) == size
    config = config_from_dict({"name": "s", "work_dir": str(tmp_path / "w"), "transcribe": {"engine": "hf"}})
    audio = speech_clips[0].audio
    budget = Profiles(config, str(tiny_whisper_dir), None, {"other": str(other)}, max_loaded=5, max_mb=1.5 * size)
    budget.transcribe("default", audio)
    budget.transcribe("other", audio)
    assert list(budget._loaded) == ["other"] and budget.loaded_mb() <= 1.5 * size  # two would not fit
    budget.transcribe("default", audio)
    assert list(budget._loaded) == ["default"]
    by_count = Profiles(config, str(tiny_whisper_dir), None, {"other": str(other)}, max_loaded=5)
    by_count.transcribe("default", audio)
    by_count.transcribe("other", audio)
    assert list(by_count._loaded) == ["default", "other"]  # no byte budget: the count alone limits
