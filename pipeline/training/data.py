"""Training data: manifest items with their label tokens, waveform augmentation, the length-grouped batch
plan, and the collator that turns a batch into model inputs.

Label layout (what the decoder learns), for an English-only model:

    tokenizer(" text")  = <|startoftranscript|> <|notimestamps|> text... <|endoftext|>
    labels              =                       <|notimestamps|> text... <|endoftext|> -100 -100
    decoder_input_ids   = <|startoftranscript|> <|notimestamps|> text... <|endoftext|>  pad  pad

The leading start-of-transcript token is stripped once here; the model puts `decoder_start_token_id`
back when it shifts the labels right. Multilingual models get `<|en|><|transcribe|>` (language and task
from the config) after the start token. Padding positions hold -100 and are ignored by the loss.

Everything random is derived from (seed, epoch, item index), never from global state, so a run that
resumes mid-epoch sees exactly the batches and augmentations an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.manifest import ManifestError, Record, Reject, iter_jsonl, resolve_audio_path

logger = logging.getLogger("dictune")

SAMPLE_RATE = 16000  # Hz, Whisper's input rate
MAX_AUDIO_SECONDS = 30.0  # Whisper's window
LABEL_PAD_ID = -100  # ignored by the cross-entropy loss
PINK_NOISE_ORDER = 16  # length of the 1/f filter applied to white noise (cheap approximation)


@dataclass(frozen=True)
class TrainItem:
    id: str
    audio_path: Path  # absolute
    duration: float  # seconds
    labels: tuple[int, ...]  # target tokens, start-of-transcript stripped, end-of-text included
    text_norm: str  # scoring form of the reference (for dev metrics)
    source: str  # manifest it came from: train | replay | dev | general_dev
    text: str = ""  # the formatted target (a context for the item after it)
    parent: str | None = None  # a cut piece: the id of the dictation it came from
    order: int | None = None  # a cut piece: its index in that dictation
    modality: str | None = None  # exam type, when the manifest says


@dataclass(frozen=True)
class AugmentOptions:
    prob: float = 0.5  # chance each switched-on augmentation is applied to an item
    noise: bool = False
    noise_snr_db: tuple[float, float] = (15.0, 40.0)
    speed: bool = False
    speed_range: tuple[float, float] = (0.9, 1.1)
    gain: bool = False
    gain_db: tuple[float, float] = (-6.0, 6.0)

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.noise or self.speed or self.gain)


# ---------------------------------------------------------------------------------------------- items


def target_ids(tokenizer: Any, text: str, decoder_start_id: int, prepend_space: bool = True) -> list[int]:
    """Prefix tokens + text tokens + end-of-text, with the leading start-of-transcript token removed once."""
    text = text.strip()
    ids = tokenizer((" " + text) if prepend_space else text, add_special_tokens=True).input_ids
    ids = list(ids)
    if ids and ids[0] == decoder_start_id:
        ids = ids[1:]
    return ids


def load_items(
    manifest: str | Path,
    source: str,
    tokenizer: Any,
    decoder_start_id: int,
    max_label_tokens: int,
    prepend_space: bool = True,
) -> tuple[list[TrainItem], list[Reject]]:
    """Read a normalized manifest; items that cannot be trained on go to rejects with their reason."""
    import soundfile

    items, rejects = [], []
    manifest = Path(manifest)
    for line, obj in iter_jsonl(manifest):
        try:
            record = Record.from_dict(obj)
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{manifest}:{line}: not a manifest record ({e!r})") from e
        path = resolve_audio_path(record, manifest)

        def reject(reason: str, line: int = line, record: Any = record) -> None:
            rejects.append(Reject(str(manifest), line, reason, "train", record.id, record.audio_filepath))

        try:
            info = soundfile.info(str(path))
        except (OSError, RuntimeError, soundfile.LibsndfileError) as e:
            reject(f"audio cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
            continue
        if info.duration > MAX_AUDIO_SECONDS + 0.01:
            reject(too_long(info.duration))
            continue
        item = to_train_item(record, path, info.duration, source, tokenizer, decoder_start_id, max_label_tokens,
                             prepend_space)  # fmt: skip
        if isinstance(item, str):
            reject(item)
            continue
        items.append(item)
    return items, rejects


def too_long(duration: float) -> str:
    return f"audio is {duration:.1f} s, over Whisper's {MAX_AUDIO_SECONDS:.0f} s (run segment)"


def to_train_item(record: Record, path: Path, duration: float, source: str, tokenizer: Any, decoder_start_id: int,
                  max_label_tokens: int, prepend_space: bool = True) -> TrainItem | str:  # fmt: skip
    """A manifest record as a training item, or the reason its text cannot be trained on (empty, too many
    target tokens). The one conversion of manifest loading and of streamed shard rows."""
    if not record.text.strip():
        return "empty text"
    labels = target_ids(tokenizer, record.text, decoder_start_id, prepend_space)
    if len(labels) > max_label_tokens:
        return f"target has {len(labels)} tokens, over the limit of {max_label_tokens}"
    norm = record.text_norm if record.text_norm is not None else _scoring_form(record.text)
    extra = record.extra
    order = extra.get("segment_index")
    return TrainItem(record.id, path, float(duration), tuple(labels), norm, source, record.text,
                     extra.get("parent_id"), int(order) if order is not None else None, extra.get("modality"))  # fmt: skip


def _scoring_form(text: str) -> str:
    from pipeline.scoring_form import normalize_for_scoring

    return normalize_for_scoring(text)


def load_waveform(path: Path) -> np.ndarray:
    """Mono float32 audio at 16 kHz."""
    from pipeline.audio import load_mono

    return load_mono(path, SAMPLE_RATE)


# ---------------------------------------------------------------------------------------------- augmentation


def training_audio(path: Path, options: AugmentOptions | None, seed: int, epoch: int, key: int) -> np.ndarray:
    """An item's waveform as training sees it: augmented (when on) by the generator of (seed, epoch, key)."""
    wave = load_waveform(path)
    if options is not None and options.enabled:
        wave = augment(wave, options, np.random.default_rng([seed, epoch, key]))
    return wave


def augment(wave: np.ndarray, options: AugmentOptions, rng: np.random.Generator) -> np.ndarray:
    """Speed, gain, then additive noise, each applied with probability options.prob."""
    if options.speed and rng.random() < options.prob:
        wave = _change_speed(wave, float(rng.uniform(*options.speed_range)))
    if options.gain and rng.random() < options.prob:
        wave = wave * np.float32(10.0 ** (rng.uniform(*options.gain_db) / 20.0))
    if options.noise and rng.random() < options.prob:
        wave = _add_noise(wave, float(rng.uniform(*options.noise_snr_db)), rng)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak > 1.0:
        wave = wave / peak
    wave = wave[: int(MAX_AUDIO_SECONDS * SAMPLE_RATE)]
    return wave.astype(np.float32, copy=False)


def _change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch together, as Kaldi's speed perturbation)."""
    import soxr

    if abs(factor - 1.0) < 1e-3 or wave.size == 0:
        return wave
    return soxr.resample(wave, SAMPLE_RATE * factor, SAMPLE_RATE, quality="HQ").astype(np.float32)


def _add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White or (roughly) pink Gaussian noise scaled to the given signal-to-noise ratio."""
    if wave.size == 0:
        return wave
    noise = rng.standard_normal(wave.size).astype(np.float32)
    if rng.random() < 0.5:  # pink-ish: a short low-pass (1/f-like) smoothing of white noise
        kernel = 1.0 / np.arange(1, PINK_NOISE_ORDER + 1, dtype=np.float32)
        noise = np.convolve(noise, kernel / kernel.sum(), mode="same").astype(np.float32)
    signal_power = float(np.mean(np.square(wave, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise, dtype=np.float64))) or 1.0
    scale = math.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return wave + np.float32(scale) * noise


# ---------------------------------------------------------------------------------------------- batching


class BatchPlan:
    """The deterministic sequence of micro-batches for one rank.

    Each epoch takes every training item plus `replay_count` items drawn from the replay pool, shuffles
    them with seed + epoch, optionally sorts them by duration inside mega-batches (long items together,
    less padding), cuts global batches of batch_size x world_size (the last one topped up from the start
    of the epoch so every rank always has a full batch), and shuffles the order of the batches. Rank r takes
    the r-th slice of each global batch. `iterate(start)` begins at any micro-batch number, which is how a
    resumed run continues exactly where the checkpoint left off.
    """

    def __init__(
        self,
        durations: Sequence[float],
        n_train: int,
        replay_count: int,
        batch_size: int,
        seed: int,
        group_by_length: bool = True,
        mega_batch_factor: int = 16,
        world_size: int = 1,
        rank: int = 0,
        pools: Sequence[tuple[int, int]] | None = None,
    ):
        if n_train < 1:
            raise ValueError("BatchPlan needs at least one training item")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.n_train = n_train
        # the items after the train items, in pools of (size, draws per epoch): replay, then mixed manifests
        pools = [(len(durations) - n_train, replay_count)] if pools is None else list(pools)
        if sum(size for size, _ in pools) != len(durations) - n_train:
            raise ValueError("BatchPlan: the pools do not cover the items after the train items")
        self.pools = [(size, draws if size else 0) for size, draws in pools]
        self.replay_count = sum(draws for _, draws in self.pools)  # drawn items per epoch, all pools
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.mega_batch_factor = mega_batch_factor
        self.world_size = world_size
        self.rank = rank
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = math.ceil((n_train + self.replay_count) / self.global_batch)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches (lists of item indices) for one epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        order, start = np.arange(self.n_train), self.n_train
        for size, draws in self.pools:
            if draws:
                pool = np.arange(start, start + size)
                order = np.concatenate([order, rng.choice(pool, draws, replace=draws > size)])
            start += size
        order = rng.permutation(order)
        if self.group_by_length:
            mega = self.global_batch * self.mega_batch_factor
            chunks = [order[i : i + mega] for i in range(0, len(order), mega)]
            order = np.concatenate([c[np.argsort(-self.durations[c], kind="stable")] for c in chunks])
        shortfall = self.batches_per_epoch * self.global_batch - len(order)
        if shortfall:
            order = np.concatenate([order, np.resize(order, shortfall)])
        batches = order.reshape(self.batches_per_epoch, self.global_batch)
        batches = batches[rng.permutation(self.batches_per_epoch)]
        mine = batches[:, self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return [row.tolist() for row in mine]

    def iterate(self, start: int = 0) -> Iterator[list[tuple[int, int]]]:
        """Endless micro-batches of (item index, epoch) from micro-batch number `start` on."""
        epoch, offset = divmod(start, self.batches_per_epoch)
        while True:
            for batch in self.epoch_batches(epoch)[offset:]:
                yield [(index, epoch) for index in batch]
            epoch, offset = epoch + 1, 0


# ---------------------------------------------------------------------------------------------- dataset


class SpeechDataset:
    """Map-style dataset over TrainItems; a key is (item index, epoch).

    Returns the (augmented) waveform, or, when an encoder cache is given, the cached encoder output; with
    `contexts` (pipeline.training.prompts.TrainingContexts) also the context token ids of (item, epoch).
    """

    def __init__(
        self,
        items: Sequence[TrainItem],
        seed: int,
        augment_options: AugmentOptions | None = None,
        encoder_cache: Any = None,
        contexts: Any = None,
    ):
        self.items = list(items)
        self.seed = seed
        self.augment_options = augment_options
        self.encoder_cache = encoder_cache
        self.contexts = contexts

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        item = self.items[index]
        out: dict[str, Any] = {"index": index, "labels": item.labels}
        if self.contexts is not None:
            out["prompt"] = self.contexts.ids(index, epoch, len(item.labels))
        if self.encoder_cache is not None:
            out["encoder_hidden_states"] = self.encoder_cache.load(item)
            return out
        out["audio"] = training_audio(item.audio_path, self.augment_options, self.seed, epoch, index)
        return out


class Collator:
    """Pads labels with -100 and turns waveforms into log-mel features (or stacks cached encoder outputs).

    Rows with a context (`prompt` ids) get explicit decoder inputs, as at inference:

        decoder_input_ids = <|startofprev|> context... <|startoftranscript|> <|notimestamps|> text...  pad
        labels            =  -100          -100...     <|notimestamps|>      text...    <|endoftext|> -100

    so the loss covers the target tokens only. Without any context in the batch the model shifts the labels
    itself (decoder_start_token_id first), which gives the same inputs for rows without context.
    """

    def __init__(self, feature_extractor: Any, decoder_start_id: int | None = None, pad_id: int | None = None):
        self.feature_extractor = feature_extractor
        self.decoder_start_id = decoder_start_id
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        prompts = [list(r.get("prompt") or ()) for r in rows]
        width = max(len(p) + len(r["labels"]) for p, r in zip(prompts, rows))
        labels = torch.full((len(rows), width), LABEL_PAD_ID, dtype=torch.long)
        for i, (prompt, row) in enumerate(zip(prompts, rows)):
            labels[i, len(prompt) : len(prompt) + len(row["labels"])] = torch.tensor(row["labels"], dtype=torch.long)
        batch: dict[str, Any] = {"labels": labels, "index": torch.tensor([r["index"] for r in rows])}
        if any(prompts):
            inputs = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            for i, (prompt, row) in enumerate(zip(prompts, rows)):
                ids = [*prompt, self.decoder_start_id, *row["labels"][:-1]]
                inputs[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            batch["decoder_input_ids"] = inputs
        if "encoder_hidden_states" in rows[0]:
            batch["encoder_hidden_states"] = torch.stack([r["encoder_hidden_states"] for r in rows])
        else:
            batch["input_features"] = log_mel(self.feature_extractor, [r["audio"] for r in rows])
        return batch


def log_mel(feature_extractor: Any, waves: Sequence[np.ndarray]) -> Any:
    """Whisper's log-mel features, padded to 30 s: a float32 tensor (batch, n_mels, 3000)."""
    return feature_extractor(
        list(waves), sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=False
    ).input_features
