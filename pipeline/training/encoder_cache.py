"""Fast decoder-only mode: encoder outputs computed once per clip and kept on disk.

When the encoder is frozen and the audio is not augmented, the encoder output of a clip is the same at
every step, and it is most of the compute (Whisper always encodes a 30 s window). Each clip is encoded
once (batched, no grad, under the training autocast) and stored as an .npy file:

    <encoder cache>/<model key>/<aa>/<audio sha256>.npy

<encoder cache> is train.encoder_cache_dir, else <cache>/encoder_cache (the model cache: --cache-dir,
$DICTUNE_CACHE, ~/.cache/dictune), shared by every run and work dir. The model key hashes the encoder
weights, the feature-extractor settings, the precision and the storage dtype, so any run with the same
base encoder and audio reuses the files and anything else gets its own folder. Files are written
atomically (a killed run leaves no half-written entry) and read memory-mapped.

Whether to cache at all is `plan_cache`: the outputs of every clip must fit the disk budget
(train.encoder_cache_budget_gb) and the free space, and on a GPU encoding is cheaper than reading
1500 x d_model values per clip from disk, so `auto` encodes on the fly there.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.files import atomic_write_bytes, sha256_file
from pipeline.training.data import TrainItem, load_waveform, log_mel

logger = logging.getLogger("dictune")

CACHE_DIR = "encoder_cache"  # under the model cache root, unless train.encoder_cache_dir says where
FREE_SPACE_MARGIN = 0.9  # never plan to fill more than this share of the free disk space
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

        mapped = np.load(self.path(item), mmap_mode="r")  # one read of the file, no intermediate copy
        return torch.from_numpy(np.array(mapped)).to(self.load_dtype or torch.float32)


@dataclass(frozen=True)
class CachePlan:
    use: bool  # cache encoder outputs on disk (else encode on the fly at every step)
    clips: int
    bytes_per_clip: int
    budget_bytes: int
    free_bytes: int
    reason: str  # one line with the arithmetic, for the log and metrics.json

    @property
    def total_bytes(self) -> int:
        return self.clips * self.bytes_per_clip


def plan_cache(clips: int, d_model: int, dtype: str, budget_gb: float, free_bytes: int, on_gpu: bool,
               frames: int = 1500, streaming: bool = False, forced: bool = False) -> CachePlan:  # fmt: skip
    """Cache or encode on the fly (encoder frozen, no augmentation). Streamed training never caches (the
    audio is read as it goes); `forced` (train.cache_encoder_outputs=true) caches whatever the budget."""
    per_clip = frames * d_model * np.dtype(NUMPY_DTYPES[dtype]).itemsize
    budget = int(budget_gb * 1e9)
    total = clips * per_clip
    sizes = f"{clips:,} clips x {per_clip / 1e6:.2f} MB ({frames} frames x {d_model} x {dtype}) = {total / 1e9:.1f} GB"
    if streaming:
        use, why = False, "streaming: encoded on the fly as the audio is read"
    elif on_gpu:
        use, why = False, "on a GPU the encoder pass costs less than reading its output from disk: encoded on the fly"
    elif total > budget:
        use, why = False, f"over the disk budget of {budget / 1e9:.0f} GB (train.encoder_cache_budget_gb): encoded on the fly"
    elif total > FREE_SPACE_MARGIN * free_bytes:
        use, why = False, f"over {FREE_SPACE_MARGIN:.0%} of the free disk space ({free_bytes / 1e9:.0f} GB): encoded on the fly"
    else:
        use, why = True, f"within the disk budget of {budget / 1e9:.0f} GB: cached on disk"
    if forced and not use and not streaming:
        use, why = True, "cached on disk (train.cache_encoder_outputs=true)"
    return CachePlan(use, clips, per_clip, budget, free_bytes, f"encoder cache: {sizes}, {why}")


def cache_root_dir(configured: str | None, cache_dir: str | None = None) -> Path:
    """train.encoder_cache_dir, else <model cache>/encoder_cache (shared by every run)."""
    from pipeline.models.resolve import cache_root

    return Path(configured).expanduser() if configured else cache_root(cache_dir) / CACHE_DIR


def free_bytes(path: Path) -> int:
    """Free space on the disk that holds `path` (its nearest existing parent)."""
    import shutil

    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


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
