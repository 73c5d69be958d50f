"""Optional acoustic augmentation of a rendering (off by default: synthesize.augment_fraction = 0).

    reverb     a simulated shoebox room (pyroomacoustics, image source method) with a drawn RT60
    noise      coloured noise (1/f^beta, beta drawn from white to brown) at a set SNR
    telephone  300-3400 Hz band through an 8 kHz channel (down- and up-sampled with soxr: the sample
               rate of the result stays 16 kHz, unlike audiomentations' Resample)

No impulse responses or noise recordings ship in any package, so rooms and noise are simulated.
Everything is drawn from the item's seed, so an augmented rendering is as deterministic as a clean one.
"""

from __future__ import annotations

import numpy as np

ROOM_SIZE_RANGE_M = ((3.0, 8.0), (3.0, 6.0), (2.4, 3.2))  # width, depth, height of the simulated room
NOISE_BETA_RANGE = (0.0, 2.0)  # spectral slope: 0 white, 1 pink, 2 brown
PHONE_BAND_HZ = (300.0, 3400.0)
PHONE_RATE_HZ = 8000


def augment(audio: np.ndarray, rate: int, kind: str, amount: float, seed: int) -> np.ndarray:
    """Apply one augmentation; `amount` is the RT60 (s) for reverb, the SNR (dB) for noise."""
    rng = np.random.default_rng(seed)
    if kind == "reverb":
        out = reverb(audio, rate, amount, rng)
    elif kind == "noise":
        out = add_noise(audio, amount, rng)
    elif kind == "telephone":
        out = telephone(audio, rate)
    else:
        raise ValueError(f"unknown augmentation {kind!r}")
    peak = float(np.max(np.abs(out))) or 1.0
    return (out * min(1.0, 0.95 / peak)).astype(np.float32)


def reverb(audio: np.ndarray, rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    import pyroomacoustics as pra

    size = np.array([rng.uniform(*r) for r in ROOM_SIZE_RANGE_M])
    absorption, max_order = pra.inverse_sabine(rt60, size)
    room = pra.ShoeBox(size, fs=rate, materials=pra.Material(absorption), max_order=min(max_order, 30))
    margin = 0.5
    source = [rng.uniform(margin, s - margin) for s in size[:2]] + [1.5]
    mic = [rng.uniform(margin, s - margin) for s in size[:2]] + [1.2]
    room.add_source(source, signal=audio.astype(np.float64))
    room.add_microphone(mic)
    room.simulate()
    return room.mic_array.signals[0][: len(audio) + rate // 2].astype(np.float32)


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    beta = rng.uniform(*NOISE_BETA_RANGE)
    spectrum = np.fft.rfft(rng.standard_normal(len(audio)))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / freqs ** (beta / 2), n=len(audio))
    signal_power = float(np.mean(audio.astype(np.float64) ** 2)) or 1e-12
    noise *= np.sqrt(signal_power / (10 ** (snr_db / 10)) / (float(np.mean(noise**2)) or 1e-12))
    return (audio + noise).astype(np.float32)


def telephone(audio: np.ndarray, rate: int) -> np.ndarray:
    import soxr
    from scipy.signal import butter, sosfilt

    narrow = soxr.resample(audio, rate, PHONE_RATE_HZ)
    sos = butter(6, PHONE_BAND_HZ, btype="bandpass", fs=PHONE_RATE_HZ, output="sos")
    return soxr.resample(sosfilt(sos, narrow).astype(np.float32), PHONE_RATE_HZ, rate).astype(np.float32)
