"""The HTTP service of `dictune serve`: an OpenAI-compatible transcription API, a review page, and the
corrections store.

    GET  /                          the review page (pipeline/service/page.html)
    GET  /v1/models                 the profiles, as OpenAI models
    POST /v1/audio/transcriptions   multipart: file, model (a profile), prompt, response_format
                                    (json | text | srt | vtt | verbose_json), temperature, language
    POST /v1/corrections            multipart: file, model, hypothesis, text -> the corrections store

verbose_json also carries the page's highlights, as character spans of "text": "terms" (the lexicon's
terms) and "low_confidence" (words whose probability is at most serve.low_confidence: start, end, word,
probability, corrected; pipeline.inference.confidence).

Every error is one line of JSON in OpenAI's shape, {"error": {"message", "type", "code"}}: 400 for an
empty or undecodable upload or a bad field, 401 for a missing or wrong token, 404 for an unknown profile,
413 for an upload over serve.max_upload_mb (counted while it streams in, refused at the limit) or audio
over serve.max_seconds, 503 with Retry-After when the work queue is full. Decoding is greedy whatever the
temperature; `language` is accepted (English models ignore it). With a token every request but the page
needs `Authorization: Bearer <token>` (compared in constant time). Transcript text is never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("dictune")

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
PAGE = Path(__file__).with_name("page.html")


class ServiceError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


class WorkQueue:
    """A bounded worker pool: `workers` decodes at once, `waiting` more queued; beyond that, 503."""

    def __init__(self, workers: int, waiting: int):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dictune-serve")
        self.slots = threading.BoundedSemaphore(workers + waiting)

    async def run(self, function, *args) -> Any:
        if not self.slots.acquire(blocking=False):
            raise ServiceError(503, "the server is busy: every worker and queue place is taken; retry shortly",
                               "server_busy", "queue_full")  # fmt: skip
        try:
            return await asyncio.wrap_future(self.executor.submit(function, *args))
        finally:
            self.slots.release()


class TermMarks:
    """Where the lexicon's terms are in a formatted report: [{"start", "end", "term"}] (characters)."""

    def __init__(self, lexicon_path: str | None):
        self.pattern = None
        if lexicon_path:
            from pipeline.lexicon import load_lexicon

            terms = sorted(load_lexicon(lexicon_path).display.values(), key=len, reverse=True)
            alternatives = [r"[\s-]+".join(map(re.escape, re.split(r"[\s-]+", t))) for t in terms]
            self.pattern = re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)

    def __call__(self, text: str) -> list[dict[str, Any]]:
        if self.pattern is None:
            return []
        return [{"start": m.start(), "end": m.end(), "term": m.group(0)} for m in self.pattern.finditer(text)]


def create_app(profiles, store, serve_cfg, token: str | None = None, lexicon: str | None = None):
    """The ASGI app (FastAPI inside an upload-size guard)."""
    import os

    workers = serve_cfg.workers or os.cpu_count() or 1
    queue = WorkQueue(workers, serve_cfg.queue_size)
    marks = TermMarks(lexicon)
    app = FastAPI(title="dictune", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.queue = queue

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, error: ServiceError):
        headers = {"Retry-After": "2"} if error.status == 503 else None
        return JSONResponse(_error(error.message, error.kind, error.code), error.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException):
        return JSONResponse(_error(str(error.detail), "invalid_request_error"), error.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse(_error(f"{field}: {first.get('msg', 'invalid')}", "invalid_request_error"), 400)

    def authorized(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise ServiceError(401, "missing or wrong token: send Authorization: Bearer <token>",
                               "authentication_error", "invalid_api_key")  # fmt: skip

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def models() -> dict:
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "dictune"}
                                           for n in profiles.names]}  # fmt: skip

    @app.post("/v1/audio/transcriptions", dependencies=[Depends(authorized)])
    async def transcriptions(file: Annotated[UploadFile, File()], model: Annotated[str, Form()] = "default",
                             prompt: Annotated[str | None, Form()] = None,
                             response_format: Annotated[str, Form()] = "json",
                             temperature: Annotated[float, Form()] = 0.0,
                             language: Annotated[str | None, Form()] = None):  # fmt: skip
        if response_format not in RESPONSE_FORMATS:
            raise ServiceError(400, f"response_format {response_format!r}: choose {', '.join(RESPONSE_FORMATS)}")
        _profile(profiles, model)
        _, audio = await _upload(file, serve_cfg.max_seconds)
        result = await queue.run(profiles.transcribe, model, audio, prompt or None)
        logger.info("serve: transcribed %.1f s of audio with profile %s", result.duration, model)  # no names, no text
        return _respond(result, response_format, marks, PlainTextResponse, serve_cfg.low_confidence)

    @app.post("/v1/corrections", dependencies=[Depends(authorized)])
    async def corrections(file: Annotated[UploadFile, File()], text: Annotated[str, Form()],
                          model: Annotated[str, Form()] = "default",
                          hypothesis: Annotated[str, Form()] = ""):  # fmt: skip
        _profile(profiles, model)
        if not text.strip():
            raise ServiceError(400, "text: the corrected report is empty")
        data, _ = await _upload(file, serve_cfg.max_seconds)  # only audio is stored
        suffix = Path(file.filename or "audio.bin").suffix or ".bin"
        row = await asyncio.to_thread(store.save, model, data, suffix, hypothesis, text, profiles.model_id(model))
        logger.info("serve: correction %d saved for %s", row, model)
        return {"id": row, "object": "correction"}

    return UploadLimit(app, int(serve_cfg.max_upload_mb * 1024 * 1024))


def _error(message: str, kind: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _profile(profiles, name: str) -> None:
    if name not in profiles.names:
        raise ServiceError(404, f"model {name!r} not found; available: {', '.join(profiles.names)}",
                           "invalid_request_error", "model_not_found")  # fmt: skip


async def _upload(file, max_seconds: float):
    """(the uploaded bytes, their decoded 16 kHz audio); 400 for an empty or undecodable file."""
    data = await file.read()
    if not data:
        raise ServiceError(400, f"{file.filename or 'file'}: empty file (0 bytes)")
    return data, await _audio_from_bytes(data, file.filename, max_seconds)


async def _audio_from_bytes(data: bytes, filename: str | None, max_seconds: float):
    from pipeline.audio import SAMPLE_RATE, load_mono
    from pipeline.errors import DictuneError

    name = Path(filename or "upload").name
    suffix = Path(name).suffix or ".wav"

    def decode():
        with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
            handle.write(data)
            handle.flush()
            return load_mono(handle.name, SAMPLE_RATE)

    try:
        audio = await asyncio.to_thread(decode)
    except (DictuneError, RuntimeError, ValueError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ServiceError(400, f"{name}: cannot decode the audio ({reason.split(': ')[-1]})") from e
    if audio.size == 0:
        raise ServiceError(400, f"{name}: holds no audio samples")
    seconds = audio.size / SAMPLE_RATE
    if seconds > max_seconds:
        raise ServiceError(413, f"{name}: {seconds:.0f} s of audio is over serve.max_seconds ({max_seconds:g} s)",
                           "invalid_request_error", "audio_too_long")  # fmt: skip
    return audio


def _respond(result, response_format: str, marks: TermMarks, plain, low_confidence: float = 0.0):
    from pipeline.inference.confidence import low_confidence_spans
    from pipeline.inference.subtitles import srt_text, vtt_text
    from pipeline.text import format_dictation

    if response_format == "text":
        return plain(result.text + "\n")
    if response_format in ("srt", "vtt"):
        cues = [(s["start"], s["end"], format_dictation(s["text"])) for s in result.segments]
        return plain(srt_text(cues) if response_format == "srt" else vtt_text(cues))
    if response_format == "json":
        return {"text": result.text}
    segments = [{"id": i, "seek": 0, "start": s["start"], "end": s["end"], "text": s["text"], "tokens": [],
                 "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0}
                for i, s in enumerate(result.segments)]  # fmt: skip
    return {"task": "transcribe", "language": "en", "duration": round(result.duration, 3), "text": result.text,
            "segments": segments, "terms": marks(result.text), "model": result.model_id,
            "low_confidence": low_confidence_spans(result.text, result.words, low_confidence)}  # fmt: skip


class UploadLimit:
    """ASGI guard: a request body over `limit` bytes is answered 413 as soon as it is known to be over
    (Content-Length, or the bytes received so far); the app then sees the client gone and stops reading."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send)
        received, started, refused = 0, False, False

        async def limited_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    if not started:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return  # the 413 is the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, send) -> None:
        body = json.dumps(_error(f"upload over serve.max_upload_mb ({self.limit / 1024 / 1024:g} MB)",
                                 "invalid_request_error", "file_too_large")).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
