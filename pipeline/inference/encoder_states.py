"""The base encoder's outputs on whole sets of clips, kept on disk and shared by the systems that use it.

    store = EncoderStateStore(work_dir / "evaluate" / "encoder_states", base_dir)
    states = store.states(transcriber, arrays, audio_key)      # None: decode from the audio
    texts = transcriber.transcribe(arrays, encoder_states=states)

See pipeline.inference.hf (Transcriber.encode / encoder_key) for why and how encoder states are shared.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pipeline.inference.hf import Transcriber


class EncoderStateStore:
    """Encoder outputs of whole sets of clips, one float32 .npy per (encoder, audio): <root>/<key>.npy.

    Read back (memory-mapped) by any Transcriber whose encoder_key() matches, so it is shared by every
    system with the same encoder weights. Written only for the base model's encoder (base_dir, no
    adapter or one that leaves the encoder alone), which is the one several systems share; other
    encoders are not stored.
    """

    def __init__(self, root: str | os.PathLike, base_dir: str | os.PathLike):
        self.root = Path(root)
        self.base_dir = Path(base_dir)
        self.used: set[str] = set()  # file names read or written through this store
        self.encoded = 0  # clips encoded here

    def states(
        self, transcriber: Transcriber, audio_arrays: Sequence[np.ndarray], audio_key: str, progress: bool = False
    ) -> np.ndarray | None:
        """The stored states of these clips for this transcriber's encoder; encoded and stored when the
        encoder is the base model's; None otherwise (the caller decodes from the audio)."""
        from pipeline.files import atomic_open, sha256_json

        key = sha256_json({"encoder": transcriber.encoder_key(), "audio": audio_key, "clips": len(audio_arrays)})
        path = self.root / f"{key}.npy"
        try:
            stored = np.load(path, mmap_mode="r")
            if stored.shape[0] == len(audio_arrays):
                self.used.add(path.name)
                return stored
        except (OSError, ValueError):
            pass
        shared = transcriber.model_dir.resolve() == self.base_dir.resolve() and not transcriber.encoder_adapted
        if not shared:
            return None
        states = transcriber.encode(audio_arrays, progress=progress)
        with atomic_open(path, "wb") as handle:
            np.save(handle, states)
        self.used.add(path.name)
        self.encoded += len(audio_arrays)
        return states

    def prune(self) -> int:
        """Remove stored states not used through this store (an old test set, an old base); returns how many.
        Does nothing when the store was not used (every transcript came from a cache)."""
        if not self.used:
            return 0
        removed = 0
        for path in self.root.glob("*.npy"):
            if path.name not in self.used:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
