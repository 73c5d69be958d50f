"""Transcribe a batch of audio files and manifests into report text, JSON and subtitles.

    summary = transcribe_files(["a.wav", "test.jsonl"], out_dir, "tiny.en", adapter_dir=None,
                               options=TranscribeConfig(), lexicon="configs/lexicons/radiology.txt")

Per input file, in out_dir: <name>.txt (the formatted report: dictation commands rendered, "new
paragraph" -> paragraphs), <name>.json (segments with start/end/text, the formatted text, model, engine
and options echoed), <name>.srt and <name>.vtt (one cue per segment); `name` is the file's stem (a
manifest line's `id` when it has one), made unique with -2, -3... A file that cannot be used (missing,
unreadable, empty, unsupported format, undecodable) gets a one-line error on stderr and a line in
out_dir/rejects.jsonl; the others are still transcribed. Decoding goes through pipeline.inference.longform.

Nothing here logs transcript text above DEBUG: the files are the output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import ContextConfig, TranscribeConfig
from pipeline.errors import DictuneError
from pipeline.inference.engines import Engine, Segment
from pipeline.manifest import ManifestError, Reject, iter_jsonl, write_rejects

logger = logging.getLogger("dictune")

SAMPLE_RATE = 16000  # Hz
MANIFEST_SUFFIXES = (".jsonl", ".jsonl.gz", ".json")  # anything else is taken as an audio file
AUDIO_SUFFIXES = ("wav", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif", "aifc", "au", "caf", "w64", "rf64",
                  "m4a", "mp4", "aac", "wma", "webm")  # fmt: skip
REJECTS_FILE = "rejects.jsonl"
STAGE = "transcribe"  # the stage name written into rejects


@dataclass(frozen=True)
class InputItem:
    audio: Path  # the audio file
    name: str  # output stem, unique within the batch
    source: str  # the argument it came from (audio file or manifest)
    line: int | None = None  # 1-based manifest line
    context_text: str | None = None  # the manifest line's own static context text (e.g. the prior report)
    context_terms: tuple[str, ...] = ()  # the manifest line's own static term list (e.g. of its exam type)


@dataclass(frozen=True)
class BatchSummary:
    files: int  # inputs given (manifest lines count one each)
    transcribed: int
    failed: int  # listed in rejects
    audio_seconds: float  # of the transcribed files
    wall_seconds: float  # decoding loop: audio loading, VAD, decoding, writing
    load_seconds: float  # engine (model) loading, export included
    out_dir: str
    engine: str

    @property
    def rtf(self) -> float:
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def line(self) -> str:
        failed = f", {self.failed} failed (see {Path(self.out_dir) / REJECTS_FILE})" if self.failed else ""
        return (f"transcribed {self.transcribed} of {self.files} files{failed}: "
                f"{self.audio_seconds / 3600:.3f} h of audio in {self.wall_seconds:.1f} s "
                f"(+{self.load_seconds:.1f} s model load), RTF {self.rtf:.3f}, engine {self.engine}; "
                f"outputs in {self.out_dir}")  # fmt: skip


# ---------------------------------------------------------------------------------------------- inputs


def collect_inputs(args: list[str]) -> tuple[list[InputItem], list[Reject]]:
    """Audio files and manifest lines, in order, with unique output names; unreadable manifests rejected."""
    items: list[InputItem] = []
    rejects: list[Reject] = []
    for arg in args:
        if str(arg).lower().endswith(MANIFEST_SUFFIXES):
            try:
                items += _manifest_items(Path(arg), rejects)
            except ManifestError as e:
                rejects.append(Reject(str(arg), None, str(e), STAGE))
        else:
            items.append(InputItem(Path(arg), Path(arg).stem, str(arg)))
    return _unique_names(items), rejects


def _manifest_items(path: Path, rejects: list[Reject]) -> list[InputItem]:
    items, bad_lines = [], []
    for number, obj in iter_jsonl(path, bad_lines):  # a bad line is rejected alone, the others are kept
        audio = obj.get("audio_filepath")
        if not isinstance(audio, str) or not audio:
            rejects.append(Reject(str(path), number, f"{path}:{number}: no audio_filepath", STAGE))
            continue
        audio_path = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        name = str(obj["id"]) if obj.get("id") not in (None, "") else Path(audio).stem
        text, terms = obj.get("context_text"), obj.get("context_terms", [])
        if not (text is None or isinstance(text, str)) or not (
            isinstance(terms, list) and all(isinstance(t, str) for t in terms)
        ):
            reason = f"{path}:{number}: context_text must be a string and context_terms a list of strings"
            rejects.append(Reject(str(path), number, reason, STAGE, name, str(audio_path)))
            continue
        terms = tuple(t.strip() for t in terms if t.strip())
        items.append(InputItem(audio_path, name, str(path), number, text.strip() or None if text else None, terms))
    rejects.extend(Reject(str(path), number, reason, STAGE) for number, reason in bad_lines)
    return items


def _unique_names(items: list[InputItem]) -> list[InputItem]:
    seen: set[str] = set()
    out = []
    for item in items:
        base = re.sub(r"[^\w.+-]+", "_", item.name).strip("._") or "audio"
        name, n = base, 1
        while name.lower() in seen:
            n += 1
            name = f"{base}-{n}"
        seen.add(name.lower())
        out.append(dataclasses.replace(item, name=name))
    return out


def load_input(item: InputItem) -> np.ndarray:
    """16 kHz mono float32 samples, or a DictuneError whose one line names the file and the problem."""
    from pipeline.audio import load_mono

    path = item.audio
    where = f"{item.source}:{item.line}: " if item.line is not None else ""
    if not path.exists():
        raise DictuneError(f"{where}{path}: file not found")
    if not path.is_file():
        raise DictuneError(f"{where}{path}: not a file")
    suffix = "".join(path.suffixes[-1:]).lower().lstrip(".")
    if suffix not in AUDIO_SUFFIXES:
        raise DictuneError(f"{where}{path}: unsupported format {('.' + suffix) if suffix else '(no extension)'}; "
                           f"give audio ({', '.join(AUDIO_SUFFIXES[:6])}, ...) or a .jsonl manifest")  # fmt: skip
    if path.stat().st_size == 0:
        raise DictuneError(f"{where}{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise DictuneError(f"{where}{path}: cannot read (permission denied)")
    try:
        audio = load_mono(path, SAMPLE_RATE)
    except DictuneError as e:
        raise DictuneError(f"{where}{e}") from e
    if audio.size == 0:
        raise DictuneError(f"{where}{path}: holds no audio samples")
    if not np.isfinite(audio).all():
        raise DictuneError(f"{where}{path}: holds NaN or infinite samples")
    return audio


# ---------------------------------------------------------------------------------------------- outputs


def write_outputs(
    item: InputItem, segments: list[Segment], duration: float, out_dir: Path, formats: tuple[str, ...],
    meta: dict[str, Any],
) -> None:  # fmt: skip
    """<name>.txt / .json / .srt / .vtt for one file, each written atomically."""
    from pipeline.files import atomic_write_json, atomic_write_text
    from pipeline.inference.subtitles import srt_text, vtt_text
    from pipeline.text import format_dictation

    spoken = " ".join(s.text for s in segments)
    report = format_dictation(spoken)
    cues = [(s.start, s.end, format_dictation(s.text)) for s in segments]
    base = out_dir / item.name
    if "txt" in formats:
        atomic_write_text(base.with_name(item.name + ".txt"), report + "\n" if report else "")
    if "json" in formats:
        record = {"file": str(item.audio), "source": item.source, "line": item.line, "duration": round(duration, 3),
                  "text": report, "spoken": spoken,
                  "segments": [{"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text} for s in segments],
                  **meta}  # fmt: skip
        atomic_write_json(base.with_name(item.name + ".json"), record)
    if "srt" in formats:
        atomic_write_text(base.with_name(item.name + ".srt"), srt_text(cues))
    if "vtt" in formats:
        atomic_write_text(base.with_name(item.name + ".vtt"), vtt_text(cues))


# ---------------------------------------------------------------------------------------------- driver


def transcribe_files(
    inputs: list[str], out_dir: str | os.PathLike, model: str, adapter_dir: str | os.PathLike | None = None,
    options: TranscribeConfig | None = None, lexicon: str | os.PathLike | None = None,
    cache_dir: str | None = None, engine: Engine | None = None, context: ContextConfig | None = None,
) -> BatchSummary:  # fmt: skip
    """Transcribe every input into out_dir; a bad file is rejected (one line on stderr), never fatal.

    `context` fills Whisper's previous-text slot (pipeline/context.py: none, static, retrieved from
    `lexicon`). A problem that concerns every file (unknown model, adapter that does not fit it, bad
    lexicon or context file) raises DictuneError before anything is decoded. `engine` reuses an engine
    already loaded."""
    from pipeline.context import InferenceContext
    from pipeline.inference.engines import load_engine

    options = options or TranscribeConfig()
    context = context or ContextConfig()
    if context.mode == "retrieved" and options.long_form != "vad":
        raise DictuneError("context: retrieved mode needs long_form vad (each chunk gets its own context)")
    out_dir = Path(out_dir)
    items, rejects = collect_inputs([str(i) for i in inputs])
    if not items and not rejects:
        raise DictuneError("transcribe: no inputs; give audio files and/or .jsonl manifests")
    own = sum(1 for item in items if item.context_text or item.context_terms)
    if own and context.mode == "none":
        raise DictuneError(f"transcribe: {own} manifest lines carry context_text/context_terms but the context "
                           "mode is none; give --context static (or retrieved) to use them")  # fmt: skip
    for reject in rejects:
        logger.error("%s", reject.reason)
    started = time.monotonic()
    engine = engine or load_engine(model, adapter_dir, options, cache_dir)
    ctx = InferenceContext(context, lexicon, engine.prompt_tokens, min(options.prompt_max_tokens,
                                                                        engine.max_prompt_tokens()))  # fmt: skip
    if context.mode == "static" and not ctx.static and own < len(items):
        raise DictuneError(f"transcribe: static context without a term list or text for {len(items) - own} of "
                           f"{len(items)} inputs; give --context-terms/--context-text or context_text/"
                           "context_terms on every manifest line")  # fmt: skip
    if ctx.static:
        logger.info("transcribe: static context of %d terms (%s)", len(ctx.static_terms), context.mode)
    load_seconds = time.monotonic() - started
    meta = {"model": model, "adapter": str(adapter_dir) if adapter_dir else None, "engine": engine.describe(),
            "options": _echo_options(options), "context": ctx.describe()}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    files = len(items) + len(rejects)  # rejects so far: manifests or manifest lines that named no audio
    try:
        done, seconds = _run_groups(engine, items, out_dir, options, ctx, meta, rejects)
    except Exception as e:
        if (stopped := _stopped(e, out_dir, rejects)) is e:
            raise
        raise stopped from e
    summary = BatchSummary(files, done, len(rejects), seconds, time.monotonic() - started, load_seconds,
                           str(out_dir), engine.name)  # fmt: skip
    write_rejects(out_dir / REJECTS_FILE, rejects)
    logger.info("transcribe: %s", summary.line())
    return summary


def _run_groups(
    engine: Engine, items: list[InputItem], out_dir: Path, options: TranscribeConfig, ctx: Any,
    meta: dict[str, Any], rejects: list[Reject],
) -> tuple[int, float]:  # fmt: skip
    """Load files until a group holds options.group_seconds of audio (one file in sequential mode), decode
    the group, write its outputs; returns (files transcribed, seconds of audio)."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from pipeline.inference.longform import transcribe_group

    group: list[tuple[InputItem, np.ndarray]] = []
    done, seconds = 0, 0.0

    def flush() -> None:
        nonlocal done, seconds
        statics = [ctx.static_for(item.context_text, item.context_terms) if item.context_text or item.context_terms
                   else ctx.default for item, _ in group]  # fmt: skip
        results = transcribe_group(
            engine, [audio for _, audio in group], options, [s.text for s in statics],
            (lambda texts, owners: ctx.second_pass(texts, [statics[i] for i in owners])) if ctx.retrieved else None,
            lambda texts, owners: ctx.correct(texts, [statics[i] for i in owners]),
        )
        for (item, audio), segments in zip(group, results):
            if not segments:
                logger.warning("%s: no speech found; its outputs are empty", item.audio)
            write_outputs(item, segments, len(audio) / SAMPLE_RATE, out_dir, options.formats, meta)
            done, seconds = done + 1, seconds + len(audio) / SAMPLE_RATE
            bar.update(1)
        group.clear()

    with logging_redirect_tqdm(loggers=[logger]), tqdm(total=len(items), desc="transcribing", unit="file",
                                                       disable=None) as bar:  # fmt: skip
        for item in items:
            try:
                audio = load_input(item)
            except DictuneError as e:
                logger.error("%s", e)
                rejects.append(Reject(item.source, item.line, str(e), STAGE, item.name, str(item.audio)))
                bar.update(1)
                continue
            group.append((item, audio))
            if (
                options.long_form == "sequential"
                or sum(len(a) for _, a in group) >= options.group_seconds * SAMPLE_RATE
            ):
                flush()
        if group:
            flush()
    return done, seconds


def _stopped(error: Exception, out_dir: Path, rejects: list[Reject]) -> Exception:
    """A full disk (or another fault of the machine) stops the batch: the rejects so far are still written
    (best effort) and the error becomes one line; any other error is returned as it is."""
    from pipeline.faults import EnvironmentFailure, describe, is_environment_error

    if not is_environment_error(error):
        return error
    with contextlib.suppress(OSError):
        write_rejects(out_dir / REJECTS_FILE, rejects)
    kept = f"the files written so far are complete, {len(rejects)} rejected listed in {out_dir / REJECTS_FILE}"
    return EnvironmentFailure(describe(error, STAGE, out_dir, kept=kept))


def _echo_options(options: TranscribeConfig) -> dict[str, Any]:
    keep = ("long_form", "max_chunk_seconds", "vad_threshold", "min_pause_ms", "speech_pad_ms", "num_beams",
            "batch_size", "max_new_tokens", "language")  # fmt: skip
    return {k: getattr(options, k) for k in keep}
