"""Render planned items to 16 kHz mono 16-bit WAV files, in parallel, skipping those already rendered.

A file's name carries a content key (hash of voice, spoken text, seed, augmentation and KEY_VERSION), so
a changed text or voice setting gives a new file name and an unchanged one is found and reused. Files
are written atomically. A failing voice never stops the others: each failure comes back as a result
with its error, for the caller to log and list in a rejects file.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.files import atomic_open, sha256_json
from pipeline.manifest import Record
from pipeline.tts import SAMPLE_RATE, parse_voice
from pipeline.tts.plan import PlanItem

logger = logging.getLogger("dictune")

KEY_VERSION = 1  # bump when rendering changes in a way the key does not see (forces re-rendering)
KEY_CHARS = 12  # hex characters of the content key kept in the file name
WAV_SUBTYPE = "PCM_16"
POLL_SECONDS = 0.5  # the parent wakes this often while waiting for a rendering
# Rough x-real-time speed per engine on one core, used only to start the slowest renderings first.
ENGINE_SPEED = {"kokoro": 1.2, "piper": 8.0, "festival": 10.0, "flite": 60.0, "espeak": 200.0}


@dataclass(frozen=True)
class RenderJob:
    id: str  # the item id
    voice: str  # voice spec, engine:name@rate
    spoken: str  # the text to speak
    seed: int
    path: str  # output WAV path
    augment: tuple[str, float] | None = None


@dataclass(frozen=True)
class RenderResult:
    id: str
    voice: str
    duration: float | None  # seconds of audio written (None on failure)
    seconds: float  # wall time spent rendering
    cpu_seconds: float = 0.0  # CPU time spent rendering (this process and its child processes)
    error: str | None = None  # one line, on failure


def content_key(item: PlanItem) -> str:
    return sha256_json(
        {
            "version": KEY_VERSION,
            "voice": item.voice.spec,
            "spoken": item.spoken,
            "seed": item.seed,
            "augment": item.augment,
            "rate": SAMPLE_RATE,
        }
    )[:KEY_CHARS]


def audio_path(item: PlanItem, audio_dir: str | Path) -> Path:
    return Path(audio_dir) / item.split / f"{item.id}.{content_key(item)}.wav"


def manifest_record(item: PlanItem, duration: float, audio_dir: str | Path, manifest_dir: str | Path) -> Record:
    """The manifest line of a rendered item; its audio path is relative to the manifest's folder."""
    extra = {"voice": item.voice.spec, "engine": item.voice.engine, "sentence_id": item.passage.id}
    if item.passage.modality:
        extra["modality"] = item.passage.modality
    extra["commands"] = item.commands
    if item.split_use:
        extra["split_use"] = item.split_use
    if item.augment:
        extra["augment"] = f"{item.augment[0]}:{item.augment[1]:g}"
    path = os.path.relpath(audio_path(item, audio_dir), manifest_dir)
    return Record(item.id, Path(path).as_posix(), round(duration, 3), item.passage.text, speaker=item.voice.speaker,
                  extra=extra)  # fmt: skip


def rendered_duration(path: str | Path) -> float | None:
    """Seconds of a rendering already on disk; None when it is missing, unreadable or empty (render it)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError):
        return None
    return info.frames / info.samplerate if info.frames else None


def job_for(item: PlanItem, audio_dir: str | Path) -> RenderJob:
    return RenderJob(
        item.id, item.voice.spec, item.spoken, item.seed, str(audio_path(item, audio_dir)), item.augment
    )


def render_one(job: RenderJob, voices_dir: str) -> RenderResult:
    """Render one job to its WAV file; any failure is returned, not raised."""
    import soundfile as sf

    from pipeline.tts import speak

    start, cpu_start = time.monotonic(), _cpu_seconds()
    try:
        audio = speak(parse_voice(job.voice), job.spoken, seed=job.seed, voices_dir=voices_dir)
        if job.augment is not None:
            from pipeline.tts.augment import augment

            audio = augment(audio, SAMPLE_RATE, job.augment[0], job.augment[1], job.seed)
        with atomic_open(job.path, "wb") as handle:
            sf.write(handle, audio, SAMPLE_RATE, subtype=WAV_SUBTYPE, format="WAV")
    except Exception as e:  # noqa: BLE001 - one voice's failure must not stop the others
        message = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        return RenderResult(job.id, job.voice, None, time.monotonic() - start, error=message)
    return RenderResult(
        job.id, job.voice, len(audio) / SAMPLE_RATE, time.monotonic() - start, _cpu_seconds() - cpu_start
    )


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (flite, espeak-ng, festival run as children)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _estimated_cost(job: RenderJob) -> float:
    return len(job.spoken) / ENGINE_SPEED.get(job.voice.split(":")[0], 10.0)


def _render_star(args: tuple[RenderJob, str]) -> RenderResult:
    return render_one(*args)


def render_jobs(jobs: Iterable[RenderJob], voices_dir: str, workers: int = 1) -> Iterator[RenderResult]:
    """Yield one result per job (in completion order); slowest jobs start first to balance workers."""
    jobs = sorted(jobs, key=_estimated_cost, reverse=True)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield render_one(job, voices_dir)
        return
    context = multiprocessing.get_context("spawn")  # no onnxruntime state is inherited by fork
    with context.Pool(min(workers, len(jobs))) as pool:  # leaving the block terminates the workers
        results = pool.imap_unordered(_render_star, [(job, voices_dir) for job in jobs], chunksize=1)
        for _ in jobs:
            yield _next_result(results)


def _next_result(results) -> RenderResult:
    """Wait in short slices: a blocking wait would not see Ctrl-C until the next rendering finished."""
    while True:
        try:
            return results.next(timeout=POLL_SECONDS)
        except multiprocessing.TimeoutError:
            continue


def render_missing(items, audio_dir: str | Path, voices_dir: str, workers: int, label: str):
    """Render the items whose WAV is not on disk yet: (durations of all renderings by item id, this run's
    results, how many were reused). A voice's first failure is logged once; the others continue."""
    from tqdm import tqdm

    durations, jobs = {}, []
    for item in items:
        duration = rendered_duration(audio_path(item, audio_dir))
        if duration is None:
            jobs.append(job_for(item, audio_dir))
        else:
            durations[item.id] = duration
    logger.info("%s: %s renderings planned, %s already on disk, %s to render", label, len(items), len(durations),
                len(jobs))  # fmt: skip
    results, failed_voices = [], set()
    with tqdm(total=len(jobs), unit="clip", desc=label, disable=not jobs) as bar:
        for result in render_jobs(jobs, voices_dir, workers):
            results.append(result)
            bar.update(1)
            if result.error is None:
                durations[result.id] = result.duration
            elif result.voice not in failed_voices:
                failed_voices.add(result.voice)
                logger.warning("%s: voice %s failed (%s); other voices continue", label, result.voice, result.error)
    return durations, results, len(items) - len(jobs)
