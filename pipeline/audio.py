"""Audio in and out: decode, down-mix, resample, loudness, edge-silence trim, and the checks ingest needs.

Decoding goes through soundfile (libsndfile: wav, flac, ogg/vorbis, opus, and mp3 from libsndfile 1.1)
and, for containers libsndfile cannot read (m4a/aac and other ffmpeg formats), falls back to librosa's
audioread path, which needs ffmpeg on the machine. Samples are float32; `load` returns them as
(frames, channels). Normalized audio is written as mono 16-bit PCM WAV: 96 dB of dynamic range is far
beyond what Whisper's log-mel front end resolves, it takes half the disk of float32, every tool reads it,
and WAV decodes faster than FLAC when training reads it back epoch after epoch.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.errors import DictuneError

SAMPLE_RATE = 16000  # Hz, Whisper's input rate
WAV_SUBTYPE = "PCM_16"  # what normalized audio is stored as (see the module docstring)
PROBE_BLOCK_FRAMES = 1 << 16  # frames read at a time when scanning a file for its checks
WHOLE_DECODE_SAMPLES = 1 << 25  # load_mono decodes a file of more samples (all channels) block by block
FALLBACK_SUFFIXES = (".mp3", ".m4a", ".mp4", ".aac", ".wma", ".webm", ".opus")  # may decode via audioread
LUFS_MIN_SECONDS = 0.4  # one BS.1770 gating block; shorter clips are measured by RMS instead
TRIM_FRAME_SECONDS = 0.025  # analysis frame of the edge-silence trim
TRIM_HOP_SECONDS = 0.010  # hop of the edge-silence trim
WAV_HEADER_SCAN_BYTES = 1 << 16  # bytes read looking for a WAV file's data chunk
TRUNCATION_SLACK_SECONDS = 0.01  # a WAV this much shorter than its header says is truncated


class AudioError(DictuneError):
    """A file that cannot be decoded; the message names the file."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int  # Hz, as stored in the file
    channels: int  # as stored in the file
    frames: int  # samples per channel actually decoded
    rms_dbfs: float  # RMS over all channels in dB full scale; -inf for digital silence, nan if not finite
    finite: bool  # False when any sample is NaN or infinite

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


# ---------------------------------------------------------------------------------------------- decoding


def probe(path: str | Path, offset: float = 0.0, duration: float | None = None) -> AudioInfo:
    """Decode a file (or its [offset, offset+duration) slice) block by block and measure it."""
    path = _existing(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            return _probe_handle(handle, offset, duration)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        if path.suffix.lower() not in FALLBACK_SUFFIXES:
            raise AudioError(f"{path}: cannot decode ({_first_line(e)})") from e
    samples, rate = _load_fallback(path, offset, duration)
    return _measure(samples, rate)


def load(path: str | Path, offset: float = 0.0, duration: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a file (or a slice in seconds) to float32 of shape (frames, channels) and its rate."""
    path = _existing(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            start = round(offset * handle.samplerate)
            frames = -1 if duration is None else round(duration * handle.samplerate)
            if start:
                handle.seek(start)
            return handle.read(frames, dtype="float32", always_2d=True), handle.samplerate
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        if path.suffix.lower() not in FALLBACK_SUFFIXES:
            raise AudioError(f"{path}: cannot decode ({_first_line(e)})") from e
    return _load_fallback(path, offset, duration)


def load_mono(
    path: str | Path, sample_rate: int = SAMPLE_RATE, offset: float = 0.0, duration: float | None = None
) -> np.ndarray:
    """Decode, down-mix and resample: the 1-D float32 signal a Whisper model takes. A long file (over
    WHOLE_DECODE_SAMPLES samples, all channels) is decoded block by block through a streaming resampler,
    so memory follows the output, not the file (10 min of 96 kHz 6-channel audio is 1.4 GB decoded whole)."""
    path = _existing(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            start = round(offset * handle.samplerate)
            frames = handle.frames - start if duration is None else round(duration * handle.samplerate)
            if frames * handle.channels > WHOLE_DECODE_SAMPLES:
                return _load_mono_blocks(handle, start, frames, sample_rate)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        pass  # load() reports it, or decodes it with the fallback
    samples, rate = load(path, offset, duration)
    return resample(to_mono(samples), rate, sample_rate)


def _load_mono_blocks(handle: sf.SoundFile, start: int, frames: int, sample_rate: int) -> np.ndarray:
    import soxr

    if start:
        handle.seek(start)
    same_rate = handle.samplerate == sample_rate
    stream = None if same_rate else soxr.ResampleStream(handle.samplerate, sample_rate, 1, "float32", "HQ")
    out, left = [], frames
    while left > 0:
        block = handle.read(min(PROBE_BLOCK_FRAMES, left), dtype="float32", always_2d=True)
        left = 0 if not len(block) else left - len(block)
        mono = to_mono(block)
        out.append(mono if same_rate else stream.resample_chunk(mono, last=left <= 0))
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, np.float32)


def declared_seconds(path: str | Path) -> float | None:
    """The duration a WAV file's header promises (its `data` chunk size), None for other formats or an
    unknown size. libsndfile silently reads what is there, so a file cut short (a copy interrupted)
    would otherwise pass as a shorter recording with the full transcript."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(WAV_HEADER_SCAN_BYTES)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, rate, align = 12, 0, 0
    while pos + 8 <= len(head):
        kind, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if kind == b"fmt " and pos + 24 <= len(head):
            rate = int.from_bytes(head[pos + 12 : pos + 16], "little")
            align = int.from_bytes(head[pos + 20 : pos + 22], "little")
        if kind == b"data":
            unknown = size in (0, 0xFFFFFFFF)  # written by a recorder that never finished the header
            return None if unknown or not rate or not align else size / align / rate
        pos += 8 + size + (size & 1)
    return None


def _probe_handle(handle: sf.SoundFile, offset: float, duration: float | None) -> AudioInfo:
    rate = handle.samplerate
    start = round(offset * rate)
    if start:
        handle.seek(start)
    left = math.inf if duration is None else round(duration * rate)
    frames, sum_squares, finite = 0, 0.0, True
    while left > 0:
        block = handle.read(int(min(PROBE_BLOCK_FRAMES, left)), dtype="float64", always_2d=True)
        if not len(block):
            break
        frames += len(block)
        left -= len(block)
        if finite and not np.isfinite(block).all():
            finite = False
        if finite:
            sum_squares += float(np.square(block).sum())
    rms = _dbfs(math.sqrt(sum_squares / (frames * handle.channels))) if frames and finite else math.nan
    return AudioInfo(rate, handle.channels, frames, rms if frames else -math.inf, finite)


def _measure(samples: np.ndarray, rate: int) -> AudioInfo:
    finite = bool(np.isfinite(samples).all())
    frames, channels = samples.shape
    rms = rms_dbfs(samples) if finite else math.nan
    return AudioInfo(rate, channels, frames, rms, finite)


def _load_fallback(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """librosa -> audioread (ffmpeg) for what libsndfile cannot open."""
    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa announces the audioread path as deprecated
            samples, rate = librosa.load(str(path), sr=None, mono=False, offset=offset, duration=duration)
    except Exception as e:  # decoders raise many types (NoBackendError, EOFError, OSError...)
        reason = _first_line(e) or type(e).__name__
        raise AudioError(f"{path}: cannot decode ({reason}; ffmpeg is needed for this format)") from e
    samples = np.asarray(samples, dtype=np.float32)
    samples = samples[:, None] if samples.ndim == 1 else samples.T
    return np.ascontiguousarray(samples), int(rate)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found" if not path.exists() else f"{path}: not a file")
    return path


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


# ---------------------------------------------------------------------------------------------- processing


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of (frames, channels) audio; 1-D input is returned as is."""
    samples = np.asarray(samples, dtype=np.float32)
    return samples if samples.ndim == 1 else samples.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling with soxr (high quality); a no-op when the rates match."""
    if rate_in == rate_out or len(samples) == 0:
        return np.asarray(samples, dtype=np.float32)
    import soxr

    return soxr.resample(samples, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB full scale over all samples (-inf for silence or no samples)."""
    if samples.size == 0:
        return -math.inf
    return _dbfs(math.sqrt(float(np.mean(np.square(samples, dtype=np.float64)))))


def loudness(samples: np.ndarray, rate: int, method: str = "lufs") -> float:
    """Integrated loudness: LUFS (BS.1770, gated) or RMS dBFS; clips under 0.4 s always use RMS."""
    if method == "lufs" and len(samples) >= LUFS_MIN_SECONDS * rate:
        import pyloudnorm

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyloudnorm warns about possible clipping
            value = float(pyloudnorm.Meter(rate).integrated_loudness(samples))
        if math.isfinite(value):
            return value
    return rms_dbfs(samples)


def loudness_gain_db(samples: np.ndarray, rate: int, method: str, target: float, peak_dbfs: float) -> float:
    """Gain (dB) that brings the loudness to `target`, lowered so no sample peaks above `peak_dbfs`."""
    if method == "none" or samples.size == 0:
        return 0.0
    level = loudness(samples, rate, method)
    if not math.isfinite(level):
        return 0.0  # digital silence: nothing to scale
    gain = target - level
    peak = float(np.max(np.abs(samples)))
    if peak > 0:
        gain = min(gain, peak_dbfs - _dbfs(peak))
    return gain


def apply_gain(samples: np.ndarray, gain_db: float) -> np.ndarray:
    return (samples * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32, copy=False)


def trim_edges(samples: np.ndarray, rate: int, top_db: float, margin_seconds: float) -> np.ndarray:
    """Cut leading and trailing silence (quieter than peak - top_db), keeping a margin at each edge."""
    if samples.size == 0 or not np.any(samples):
        return samples[:0]
    import librosa

    frame = max(1, round(TRIM_FRAME_SECONDS * rate))
    hop = max(1, round(TRIM_HOP_SECONDS * rate))
    _, (start, end) = librosa.effects.trim(samples, top_db=top_db, frame_length=frame, hop_length=hop)
    margin = round(margin_seconds * rate)
    return samples[max(0, start - margin) : min(len(samples), end + margin)]


def preload() -> None:
    """Import and warm up librosa's lazy modules, soxr and pyloudnorm (seconds on first use) once, so
    that worker processes forked afterwards inherit them instead of each paying again."""
    tone = (0.1 * np.sin(np.arange(SAMPLE_RATE) * 0.2)).astype(np.float32)
    trim_edges(resample(tone, SAMPLE_RATE, SAMPLE_RATE // 2), SAMPLE_RATE // 2, 40.0, 0.0)
    loudness(tone, SAMPLE_RATE)


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Write mono audio as 16-bit PCM WAV (clipped to [-1, 1] so nothing wraps around).

    Encoded in memory, then written by Python: a full disk or an I/O error raises the OSError it is
    (ENOSPC, EIO), which libsndfile would report only as "System error"."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), rate, subtype=WAV_SUBTYPE, format="WAV")
    with open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def _dbfs(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0 else -math.inf
