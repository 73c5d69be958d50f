"""pipeline.audio: decoding across formats, down-mix, resampling, loudness, trim and the probe checks."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from audio_signals import EDGE_SECONDS, speech_like, write

from pipeline import audio

RATE = 16000


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg"])
def test_formats_decode_to_the_written_signal(tmp_path, suffix):
    signal = speech_like(2.0, seed=1)
    path = write(tmp_path / f"clip.{suffix}", signal)
    info = audio.probe(path)
    decoded = audio.load_mono(path)
    assert (info.sample_rate, info.channels, info.frames) == (RATE, 1, len(signal))
    assert info.finite and abs(info.rms_dbfs - audio.rms_dbfs(signal)) < 0.5
    assert len(decoded) == len(signal)
    if suffix == "ogg":  # lossy: the waveform matches closely, not exactly
        assert np.corrcoef(decoded, signal)[0, 1] > 0.99
    else:
        assert np.max(np.abs(decoded - signal)) < 2e-4  # 16-bit quantization


def test_mp3_decodes(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} has no MP3 support (needs >= 1.1)")
    signal = speech_like(2.0, seed=2)
    path = write(tmp_path / "clip.mp3", signal)
    decoded = audio.load_mono(path)
    assert abs(len(decoded) - len(signal)) < 0.05 * RATE
    assert abs(audio.rms_dbfs(decoded) - audio.rms_dbfs(signal)) < 1.0


def test_m4a_decodes_through_the_fallback(tmp_path):
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed: m4a/aac cannot be written or decoded (apt-get install ffmpeg)")
    signal = speech_like(2.0, seed=3)
    wav = write(tmp_path / "clip.wav", signal)
    m4a = tmp_path / "clip.m4a"
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(wav), str(m4a)], check=True)
    info = audio.probe(m4a)
    assert info.sample_rate == RATE and abs(info.duration - 2.0) < 0.1
    assert abs(info.rms_dbfs - audio.rms_dbfs(signal)) < 1.0


def test_undecodable_files_raise_audio_error_naming_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    for path in (corrupt, empty, tmp_path / "missing.wav"):
        with pytest.raises(audio.AudioError, match=path.name):
            audio.probe(path)


def test_probe_flags_nan_and_silence(tmp_path):
    signal = speech_like(1.0).astype(np.float32)
    signal[100] = np.nan
    nan_info = audio.probe(write(tmp_path / "nan.wav", signal, subtype="FLOAT"))
    assert not nan_info.finite and math.isnan(nan_info.rms_dbfs)
    silent = audio.probe(write(tmp_path / "silent.wav", np.zeros(RATE, np.float32)))
    assert silent.finite and silent.rms_dbfs == -math.inf and silent.duration == 1.0


def test_probe_and_load_honour_offset_and_duration(tmp_path):
    signal = np.concatenate([np.zeros(RATE), 0.5 * np.ones(RATE), np.zeros(RATE)]).astype(np.float32)
    path = write(tmp_path / "x.wav", signal, subtype="FLOAT")
    info = audio.probe(path, offset=1.0, duration=1.0)
    assert info.frames == RATE and abs(info.rms_dbfs - 20 * math.log10(0.5)) < 1e-6
    samples, rate = audio.load(path, offset=1.0, duration=1.0)
    assert rate == RATE and samples.shape == (RATE, 1) and np.allclose(samples, 0.5)


def test_stereo_is_averaged_to_mono():
    left, right = np.full(10, 0.2, np.float32), np.full(10, 0.6, np.float32)
    assert np.allclose(audio.to_mono(np.stack([left, right], axis=1)), 0.4)


def test_resample_keeps_length_ratio_and_pitch():
    rate_in = 8000
    tone = np.sin(2 * np.pi * 440 * np.arange(rate_in) / rate_in).astype(np.float32)
    out = audio.resample(tone, rate_in, RATE)
    assert out.dtype == np.float32 and len(out) == 2 * len(tone)
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * RATE / len(out)
    assert abs(peak_hz - 440) < 2


@pytest.mark.parametrize("method", ["lufs", "rms"])
def test_loudness_gain_reaches_the_target(method):
    quiet = speech_like(3.0, seed=4, level=0.02)
    gain = audio.loudness_gain_db(quiet, RATE, method, target=-23.0, peak_dbfs=-1.0)
    assert gain > 10
    assert abs(audio.loudness(audio.apply_gain(quiet, gain), RATE, method) - (-23.0)) < 0.1


def test_loudness_gain_respects_the_peak_ceiling_and_silence():
    spiky = speech_like(2.0, seed=5, level=0.01)
    spiky[RATE] = 0.9  # one click near full scale
    gain = audio.loudness_gain_db(spiky, RATE, "lufs", target=-10.0, peak_dbfs=-1.0)
    assert np.max(np.abs(audio.apply_gain(spiky, gain))) <= 10 ** (-1.0 / 20) + 1e-6
    assert audio.loudness_gain_db(np.zeros(RATE, np.float32), RATE, "lufs", -23.0, -1.0) == 0.0
    assert audio.loudness_gain_db(spiky, RATE, "none", -23.0, -1.0) == 0.0


def test_trim_cuts_edge_silence_and_keeps_the_margin():
    signal = speech_like(4.0, seed=6)
    voiced = np.flatnonzero(np.abs(signal) > 0.01)
    trimmed = audio.trim_edges(signal, RATE, top_db=40.0, margin_seconds=0.1)
    expected = (voiced[-1] - voiced[0]) / RATE + 0.2
    assert len(trimmed) / RATE < 4.0 - 2 * EDGE_SECONDS + 0.3
    assert abs(len(trimmed) / RATE - expected) < 0.06
    assert audio.trim_edges(np.zeros(RATE, np.float32), RATE, 40.0, 0.1).size == 0


def test_write_wav_is_16_bit_mono_and_clips_instead_of_wrapping(tmp_path):
    path = tmp_path / "out.wav"
    audio.write_wav(path, np.array([0.5, 1.5, -2.0], np.float32), RATE)
    info = sf.info(str(path))
    assert (info.subtype, info.channels, info.samplerate) == ("PCM_16", 1, RATE)
    data, _ = sf.read(str(path), dtype="float32")
    assert data[1] > 0.99 and data[2] <= -0.99
