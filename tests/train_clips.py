"""Test helper: a tiny training corpus of tone clips with radiology sentences (train/dev manifests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SENTENCES = (
    "Bibasilar atelectasis without pleural effusion.",
    "No pneumothorax is seen.",
    "Mild hydronephrosis of the left kidney.",
    "The endotracheal tube is in good position.",
)


def write_corpus(root: Path, name: str, n: int, seed: int = 0) -> Path:
    """n tone+noise clips of 0.4-1.2 s (one pitch per sentence) with their sentences; returns the manifest."""
    import soundfile

    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        k = i % len(SENTENCES)
        seconds = float(rng.uniform(0.4, 1.2))
        t = np.arange(int(seconds * 16000)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * k) * t) + 0.01 * rng.standard_normal(t.size)
        path = root / "audio" / f"{name}_{i:03d}.wav"
        soundfile.write(path, wave.astype(np.float32), 16000)
        rows.append(
            {
                "id": f"{name}-{i}",
                "audio_filepath": f"audio/{path.name}",
                "duration": seconds,
                "text": SENTENCES[k],
                "text_norm": SENTENCES[k].lower().rstrip("."),
            }
        )
    manifest = root / f"{name}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest
