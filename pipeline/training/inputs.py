"""What the training loop consumes, prepared before it starts: items, rejects, the batch plan, the
encoder cache decision, contexts, the dataset and collator, and the DataLoader from any micro-batch on.

    inputs = TrainingInputs(config, bundle, accelerator, out_dir, augment_options, precision)
    batches = iter(inputs.loader(start))       # endless micro-batches, resumable at any number

Training items come from train.train_manifest (default <work_dir>/normalize/train.jsonl) plus
extra_train_manifests; replay and mix_manifests pools are drawn into each epoch at their shares
(pipeline.training.data.BatchPlan). Every item that cannot be trained on is listed in <out>/rejects.jsonl.
"""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config
from pipeline.errors import DictuneError
from pipeline.faults import is_environment_error
from pipeline.manifest import Record, Reject, manifest_hours, write_rejects
from pipeline.training.data import (
    AugmentOptions,
    BatchPlan,
    Collator,
    SpeechDataset,
    TrainItem,
    load_items,
    to_train_item,
    training_audio,
)
from pipeline.training.encoder_cache import CachePlan, cache_root_dir, free_bytes, plan_cache, prepare_cache
from pipeline.training.evaluation import load_terms
from pipeline.training.model_setup import spec_augment_active
from pipeline.training.shards import INDEX_NAME, ShardIndex, read_index, write_shards
from pipeline.training.state import resolve_loader_workers
from pipeline.training.stream import ShardStream, StreamOptions, streaming_wanted

logger = logging.getLogger("dictune")

POOL_SALT = 104729  # separates the replay / mix draws of a streamed batch from other generators


def cache_blockers(cfg: Any, encoder_trainable: bool, augment: AugmentOptions) -> list[str]:
    """Why encoder outputs cannot be cached (each a reason), empty when they can."""
    checks = (
        ("the encoder trains (set train.adapt=decoder)", encoder_trainable),
        ("waveform augmentation is on", augment.enabled),
        ("SpecAugment is on", spec_augment_active(cfg)),
    )
    return [name for name, on in checks if on]


class TrainingInputs:
    def __init__(self, config: Config, bundle: Any, accelerator: Any, out_dir: Path, augment: AugmentOptions,
                 precision: str, progress: bool = False):  # fmt: skip
        self.config, self.cfg = config, config.train
        self.bundle, self.accelerator, self.out_dir = bundle, accelerator, out_dir
        self.precision, self.progress = precision, progress
        self.loader_workers = resolve_loader_workers(self.cfg.num_workers, accelerator.device.type == "cuda",
                                                     os.cpu_count(), int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # fmt: skip
        self.whisper = bundle.whisper
        self.augment = augment
        self.stream = self._open_stream()  # None: the training items are loaded whole
        rejects = self._load_train() if self.stream is None else self._pool_rejects
        rejects += self._load_dev()
        if self.accelerator.is_main_process:
            write_rejects(self.out_dir / "rejects.jsonl", rejects)
        for reject in rejects:
            logger.warning("train: skipped %s", reject)
        self.rejects = rejects  # written to rejects.jsonl now, again with the stream's at the end
        items = self.items + self.dev + self.general_dev
        clips = len({i.audio_path for i in items}) + (self.stream.index.total_rows if self.stream else 0)
        self.cache_root = cache_root_dir(self.cfg.encoder_cache_dir, config.model.cache_dir)
        self.cache_plan = self._plan_cache(clips, augment)
        self.use_cache = self.cache_plan is not None and self.cache_plan.use
        self.cache = self._build_cache(items) if self.use_cache else None
        self.terms = load_terms(config.lexicon)
        self.dataset = SpeechDataset(self.items, config.seed, None if self.use_cache else augment, self.cache,
                                     self._contexts(self.items))  # fmt: skip
        self.stream_rejects: dict[str, Reject] = {}  # rows the stream could not train on, by id
        whisper_config = self.whisper.config
        self.collator = Collator(bundle.processor.feature_extractor, whisper_config.decoder_start_token_id,
                                 whisper_config.pad_token_id)  # fmt: skip

    # ------------------------------------------------------------------------------------------ items

    def _train_path(self) -> Path:
        return Path(self.cfg.train_manifest or self.config.work_path / "normalize" / "train.jsonl")

    def _open_stream(self) -> ShardStream | None:
        """The shard stream when train.streaming resolves on: the train manifest and extra_train_manifests
        as shards (normalize's when they are of exactly these manifests and newer, else written here);
        replay and mix_manifests stay in memory and are drawn into each batch at their shares."""
        cfg, acc = self.cfg, self.accelerator
        if str(cfg.streaming).lower() == "false":
            return None
        manifests = [self._train_path(), *map(Path, cfg.extra_train_manifests)]
        shard_dir = Path(cfg.shard_dir or self.config.work_path / "normalize" / "shards" / "train")
        index = self._current_index(shard_dir, manifests)  # normalize's: the same answer on every process
        if index is None:
            acc.wait_for_everyone()  # every process reads our own shards before the main one may rewrite them
            index = self._current_index(self.out_dir / "shards", manifests)
            acc.wait_for_everyone()
        hours = index.hours if index is not None else sum(manifest_hours(m) for m in manifests)
        if not streaming_wanted(cfg.streaming, hours, cfg.streaming_min_hours):
            return None
        if index is None:
            if acc.is_main_process:
                write_shards(manifests, self.out_dir / "shards", cfg.rows_per_shard)
            acc.wait_for_everyone()
            index = read_index(self.out_dir / "shards")
        self.items, self.plan, self.n_train = [], None, index.total_rows
        self.sources = {"shards": {"items": index.total_rows, "hours": round(index.hours, 3), "streamed": True,
                                   "manifests": list(index.sources)}}  # fmt: skip
        pools, self._pool_rejects = self._load_pools()
        self.pools = [(source, items, share) for source, _, share, items in pools if items]  # drawn into batches
        for _, path, share, items in pools:
            if items:
                self.sources[str(path)] = {**amount(items), "share": share}
        self.n_replay = sum(len(items) for source, items, _ in self.pools if source == "replay")
        options = StreamOptions(cfg.stream_batch_seconds, cfg.stream_max_items, cfg.stream_readers, cfg.stream_pool_rows)
        stream = ShardStream(index, self.config.seed, options, acc.num_processes, acc.process_index)
        logger.info("train: streaming %s rows (%.1f h) from %d shards at %s; this process reads shard groups %s",
                    f"{index.total_rows:,}", index.hours, len(index.shards), index.directory, stream.readers)  # fmt: skip
        return stream

    @staticmethod
    def _current_index(shard_dir: Path, manifests: list[Path]) -> ShardIndex | None:
        """The shard index at shard_dir if it was written from exactly these manifests after they last changed."""
        if not (shard_dir / INDEX_NAME).is_file():
            return None
        index = read_index(shard_dir)
        written = (shard_dir / INDEX_NAME).stat().st_mtime
        same = [Path(m).resolve() for m in index.sources] == [m.resolve() for m in manifests]
        if same and all(m.is_file() and m.stat().st_mtime <= written for m in manifests):
            return index
        logger.info("train: the shards at %s are not of %s as it is now; not used", shard_dir,
                    ", ".join(map(str, manifests)))  # fmt: skip
        return None

    def _pool_draws(self, micro: int, rows: int) -> list[TrainItem]:
        """Replay / mix items added to a streamed batch of `rows` rows: each pool's share of the batch
        (shares are of all items, as in the in-memory plan), drawn by (seed, micro-batch, pool)."""
        rest = 1.0 - sum(share for _, _, share in self.pools)
        drawn = []
        for k, (_, items, share) in enumerate(self.pools):
            rng = np.random.default_rng([self.config.seed, micro, k, POOL_SALT])
            expected = rows * share / rest
            count = int(expected) + int(rng.random() < expected - int(expected))
            drawn += [items[i] for i in rng.choice(len(items), count, replace=count > len(items))]
        return drawn

    def _load_dev(self) -> list:
        cfg, work = self.cfg, self.config.work_path
        dev_path = cfg.dev_manifest if cfg.dev_manifest is not None else work / "normalize" / "dev.jsonl"
        self.dev, rejects = self._load_optional(dev_path, "dev", required=bool(cfg.dev_manifest))
        self.general_dev, more = self._load_optional(cfg.general_dev_manifest, "general_dev", required=True)
        return rejects + more

    def _load_train(self) -> list:
        cfg, train_path = self.cfg, self._train_path()
        train, rejects = self._load(train_path, "train")
        self.sources = {str(train_path): amount(train)}  # items and hours per training manifest
        for extra_path in cfg.extra_train_manifests:
            more_train, more = self._load(Path(extra_path), "train")
            train, rejects = train + more_train, rejects + more
            self.sources[str(extra_path)] = amount(more_train)
        if not train:
            raise DictuneError(f"{train_path}: no usable training items (see {self.out_dir / 'rejects.jsonl'})")
        pools, more = self._load_pools()  # drawn into each epoch at their shares
        rejects += more
        rest = 1 - sum(share for _, _, share, items in pools if items)
        draws = [round(len(train) * share / rest) if items else 0 for _, _, share, items in pools]
        for (source, path, _, items), count in zip(pools, draws):
            if source == "mix":
                self.sources[path] = {**amount(items), "per_epoch": count}
        self.n_train = len(train)
        self.n_replay = sum(len(items) for source, _, _, items in pools if source == "replay")
        self.items = train + [item for *_, items in pools for item in items]
        acc = self.accelerator
        self.plan = BatchPlan([i.duration for i in self.items], len(train), 0, cfg.batch_size, self.config.seed,
                              cfg.group_by_length, cfg.mega_batch_factor, acc.num_processes, acc.process_index,
                              pools=[(len(items), count) for (*_, items), count in zip(pools, draws)])  # fmt: skip
        return rejects

    def _load_pools(self) -> tuple[list[tuple[str, str, float, list[TrainItem]]], list]:
        """train.replay_manifest (when replay_ratio > 0), then each of train.mix_manifests: (source, path,
        share of the items, items) each, and their rejects."""
        cfg = self.cfg
        named = ([("replay", cfg.replay_manifest, cfg.replay_ratio)] if cfg.replay_manifest and cfg.replay_ratio > 0
                 else []) + [("mix", path, share) for path, share in cfg.mix_manifests.items()]  # fmt: skip
        pools, rejects = [], []
        for source, path, share in named:
            items, more = self._load(Path(path), source)
            pools.append((source, path, share, items))
            rejects += more
        return pools, rejects

    def _load(self, path: Path, source: str) -> tuple[list[TrainItem], list]:
        config = self.whisper.config
        return load_items(path, source, self.bundle.processor.tokenizer, config.decoder_start_token_id,
                          min(self.cfg.max_label_tokens, config.max_target_positions), self.cfg.prepend_space)  # fmt: skip

    def _load_optional(self, path: str | Path | None, source: str, required: bool) -> tuple[list[TrainItem], list]:
        """A dev-type manifest, capped at eval_max_items (a seeded subset); none: no such evaluation."""
        if not path or not Path(path).is_file():
            if path and required:
                raise DictuneError(f"{path}: manifest not found (train.{source}_manifest)")
            if path:
                logger.info("train: no %s manifest at %s, so no %s evaluation", source, path, source)
            return [], []
        items, rejects = self._load(Path(path), source)
        limit = self.cfg.eval_max_items
        if limit and len(items) > limit:
            rng = np.random.default_rng([self.config.seed, zlib.crc32(source.encode())])
            keep = rng.choice(len(items), limit, replace=False)
            items = [items[i] for i in sorted(keep)]
        return items, rejects

    def _contexts(self, items: list[TrainItem], previous: list[str | None] | None = None) -> Any:
        """Training contexts (pipeline/training/prompts.py), or None when train.context_* turn them off."""
        from pipeline.training.prompts import ContextOptions, TrainingContexts

        cfg = self.cfg
        options = ContextOptions(cfg.context_terms_share, cfg.context_previous_share, tuple(cfg.context_distractors),
                                 cfg.context_keep_own, cfg.context_max_tokens)  # fmt: skip
        if not options.enabled:
            return None
        return TrainingContexts(items, self.terms, self.bundle.processor.tokenizer, options, self.config.seed,
                                self.whisper.config.max_target_positions, previous)  # fmt: skip

    # ------------------------------------------------------------------------------------------ encoder cache

    def _plan_cache(self, clips: int, augment: AugmentOptions) -> CachePlan | None:
        """train.cache_encoder_outputs: true/false as set; auto caches when possible and within budget.
        None: caching is impossible (the reasons are logged)."""
        setting = str(self.cfg.cache_encoder_outputs).lower()
        blockers = cache_blockers(self.cfg, self.bundle.encoder_trainable, augment)
        if setting == "true" and blockers:
            raise DictuneError(f"train.cache_encoder_outputs=true is impossible: {'; '.join(blockers)}")
        if blockers or setting == "false":
            logger.info("encoder cache: off (%s)", "; ".join(blockers) or "train.cache_encoder_outputs=false")
            return None
        plan = plan_cache(clips, self.whisper.config.d_model, self.cfg.encoder_cache_dtype,
                          self.cfg.encoder_cache_budget_gb, free_bytes(self.cache_root),
                          self.accelerator.device.type == "cuda", streaming=self.stream is not None,
                          forced=setting == "true")  # fmt: skip
        logger.info("%s", plan.reason)
        return plan

    def _build_cache(self, items: list[TrainItem]) -> Any:
        return prepare_cache(self.whisper.model.encoder, self.bundle.processor.feature_extractor, items, self.cache_root,
                             self.precision, self.cfg.encoder_cache_dtype, self.accelerator, self.cfg.eval_batch_size,
                             progress=self.progress)  # fmt: skip

    # ------------------------------------------------------------------------------------------ loading

    def loader(self, start: int) -> Any:
        """Endless collated micro-batches from micro-batch number `start` on."""
        import torch
        from torch.utils.data import DataLoader

        if self.stream is not None:
            return DataLoader(StreamDataset(self.config.seed, self.augment), batch_sampler=StreamBatches(self, start),
                              collate_fn=self.collator, num_workers=self.loader_workers)  # fmt: skip
        plan = self.plan

        class _Batches:
            def __iter__(self) -> Any:
                return plan.iterate(start)

        return DataLoader(self.dataset, batch_sampler=_Batches(), collate_fn=self.collator,
                          num_workers=self.loader_workers, generator=torch.Generator().manual_seed(self.config.seed),
                          persistent_workers=False)  # fmt: skip

    def stream_entries(self, micro: int, epoch: int, rows: list[dict[str, Any]]) -> list[StreamEntry]:
        """A streamed batch as dataset entries: rows tokenized (too-long targets rejected), replay / mix
        items added at their shares, contexts drawn."""
        config, tokenizer = self.whisper.config, self.bundle.processor.tokenizer
        limit = min(self.cfg.max_label_tokens, config.max_target_positions)
        items, previous = [], []
        for row in rows:
            extra = {k: row[k] for k in ("parent_id", "segment_index", "modality") if row[k] is not None}
            record = Record(row["id"], row["audio_filepath"], row["duration"], row["text"], row["text_norm"], None, extra)
            item = to_train_item(record, Path(row["audio_filepath"]), row["duration"], "train", tokenizer,
                                 config.decoder_start_token_id, limit, self.cfg.prepend_space)  # fmt: skip
            if isinstance(item, str):
                self.stream_rejects[row["id"]] = Reject(row["manifest"], row["line"], item, "train", row["id"],
                                                        row["audio_filepath"])  # fmt: skip
                continue
            items.append(item)
            previous.append(row["previous_text"])
        if not items:
            raise DictuneError(f"{self.stream.index.directory}: every row of a batch was rejected (see "
                               f"{self.out_dir / 'rejects.jsonl'} after the run)")  # fmt: skip
        pooled = self._pool_draws(micro, len(items))
        items, previous = items + pooled, previous + [None] * len(pooled)
        contexts = self._contexts(items, previous)
        return [StreamEntry(item, epoch, zlib.crc32(item.id.encode()),
                            contexts.ids(n, epoch, len(item.labels)) if contexts is not None else [])
                for n, item in enumerate(items)]  # fmt: skip

    def finish(self) -> None:
        """Add the rows the stream rejected to rejects.jsonl (main process)."""
        if self.stream_rejects and self.accelerator.is_main_process:
            write_rejects(self.out_dir / "rejects.jsonl", self.rejects + list(self.stream_rejects.values()))

    def summary(self) -> dict[str, Any]:
        cache, plan = self.cache, self.cache_plan
        return {
            "encoder_cache": None if cache is None else
            {"computed": cache.computed, "reused": cache.hits, "seconds": round(cache.seconds, 2)},
            "encoder_cache_plan": None if plan is None else plan.reason,
            "train_items": self.n_train,
            "train_sources": self.sources,
            "rejected_items": len(self.rejects) + len(self.stream_rejects),
            "streamed_rows_read": None if self.stream is None else self.stream.rows_read,
        }  # fmt: skip


def amount(items: list[TrainItem]) -> dict[str, float]:
    return {"items": len(items), "hours": round(sum(i.duration for i in items) / 3600, 3)}


@dataclass(frozen=True)
class StreamEntry:
    item: TrainItem
    epoch: int
    key: int  # the item's stable number: seeds its augmentation
    prompt: list[int]


class StreamBatches:
    """A DataLoader batch_sampler: the stream's batches as lists of StreamEntry, from micro-batch `start`."""

    def __init__(self, inputs: TrainingInputs, start: int):
        self.inputs, self.start = inputs, start

    def __iter__(self) -> Any:
        for micro, (epoch, rows) in enumerate(self.inputs.stream.iterate(self.start), start=self.start):
            yield self.inputs.stream_entries(micro, epoch, rows)


class StreamDataset:
    """Loads the audio of a StreamEntry (augmented as the in-memory dataset does, by (seed, epoch, key))."""

    def __init__(self, seed: int, augment_options: AugmentOptions | None):
        self.seed, self.augment_options = seed, augment_options

    def __getitem__(self, entry: StreamEntry) -> dict[str, Any]:
        try:
            wave = training_audio(entry.item.audio_path, self.augment_options, self.seed, entry.epoch, entry.key)
        except (OSError, RuntimeError, ValueError) as e:  # a file changed or vanished after ingest checked it
            if is_environment_error(e):
                raise  # the machine's fault (disk, memory), not the item's
            raise DictuneError(f"{entry.item.audio_path}: audio of {entry.item.id!r} cannot be read now "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e  # fmt: skip
        return {"index": entry.key, "labels": entry.item.labels, "prompt": entry.prompt, "audio": wave}
