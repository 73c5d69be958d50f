"""Fast decoder-only mode: encoder outputs computed once per clip and kept on disk.

When the encoder is frozen and the audio is not augmented, the encoder output of a clip is the same at
every step, and it is most of the compute (Whisper always encodes a 30 s window). Each clip is encoded
once (batched, no grad, under the training autocast) and stored as an .npy file:

    <work_dir>/train/encoder_cache/<model key>/<aa>/<audio sha256>.npy

The model key hashes the encoder weights, the feature-extractor settings, the precision and the storage
dtype, so a rerun with the same base model and audio reuses the files and anything else gets its own
folder. Files are written atomically; a killed run leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.files import atomic_write_bytes, sha256_file
from pipeline.training.data import TrainItem, load_waveform, log_mel

logger = logging.getLogger("dictune")

CACHE_VERSION = 1  # bump when the stored layout or the way outputs are computed changes
NUMPY_DTYPES = {"float16": np.float16, "float32": np.float32}


def model_key(encoder: Any, feature_extractor: Any, precision: str, dtype: str) -> str:
    """A short hash of everything an encoder output depends on besides the audio."""
    digest = hashlib.sha256()
    settings = {
        "version": CACHE_VERSION,
        "precision": precision,
        "dtype": dtype,
        "features": {k: v for k, v in feature_extractor.to_dict().items() if k != "mel_filters"},
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


class EncoderCache:
    def __init__(self, root: Path, key: str, dtype: str = "float16", load_dtype: Any = None):
        self.dir = Path(root) / key
        self.np_dtype = NUMPY_DTYPES[dtype]
        self.load_dtype = (
            load_dtype  # torch dtype of loaded outputs (the autocast dtype saves a cast per step)
        )
        self._audio_keys: dict[Path, str] = {}
        self.hits = 0  # clips found already cached by prepare_cache
        self.computed = 0  # clips encoded (by all processes together)
        self.seconds = 0.0  # time spent encoding

    def audio_key(self, item: TrainItem) -> str:
        key = self._audio_keys.get(item.audio_path)
        if key is None:
            key = self._audio_keys[item.audio_path] = sha256_file(item.audio_path)
        return key

    def path(self, item: TrainItem) -> Path:
        key = self.audio_key(item)
        return self.dir / key[:2] / f"{key}.npy"

    def missing(self, items: Sequence[TrainItem]) -> list[TrainItem]:
        """Items without a cached output, each audio file once."""
        seen, out = set(), []
        for item in items:
            path = self.path(item)
            if path in seen:
                continue
            seen.add(path)
            if not path.exists():
                out.append(item)
        return out

    def build(
        self,
        items: Sequence[TrainItem],
        encode: Callable[[Any], Any],
        feature_extractor: Any,
        batch_size: int,
        progress: bool = False,
    ) -> int:
        """Encode the given (missing) items in batches and store them; returns how many were written."""
        from tqdm.auto import tqdm

        batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        for batch in tqdm(batches, desc="encoder cache", unit="batch", disable=not progress):
            features = log_mel(feature_extractor, [load_waveform(item.audio_path) for item in batch])
            outputs = encode(features).float().cpu().numpy()
            for item, output in zip(batch, outputs):
                buffer = io.BytesIO()
                np.save(buffer, output.astype(self.np_dtype))
                atomic_write_bytes(self.path(item), buffer.getvalue())
        return len(items)

    def load(self, item: TrainItem) -> Any:
        """The cached encoder output of an item as a tensor (frames, d_model) of load_dtype (float32 default)."""
        import torch

        tensor = torch.from_numpy(np.load(self.path(item)))
        return tensor.to(self.load_dtype or torch.float32)


def prepare_cache(
    encoder: Any,
    feature_extractor: Any,
    items: Sequence[TrainItem],
    root: Path,
    precision: str,
    dtype: str,
    accelerator: Any,
    batch_size: int,
    progress: bool = False,
) -> EncoderCache:
    """The cache for this encoder with every item present; each process encodes its share of the
    missing clips (under the training autocast), then all wait for each other."""
    import torch

    key = model_key(encoder, feature_extractor, precision, dtype)
    load_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    cache = EncoderCache(root, key, dtype, load_dtype)
    missing = cache.missing(items)
    cache.hits = len({cache.path(i) for i in items}) - len(missing)
    encoder = encoder.eval()

    def encode(features: Any) -> Any:
        with torch.inference_mode(), accelerator.autocast():
            return encoder(features.to(accelerator.device)).last_hidden_state

    start = time.monotonic()
    mine = missing[accelerator.process_index :: accelerator.num_processes]
    cache.build(
        mine, encode, feature_extractor, batch_size, progress=progress and accelerator.is_main_process
    )
    accelerator.wait_for_everyone()
    cache.computed, cache.seconds = len(missing), time.monotonic() - start
    logger.info(
        "encoder cache: %d clips encoded, %d reused (%.1f s)", len(missing), cache.hits, cache.seconds
    )
    return cache
