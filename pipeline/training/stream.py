"""Streaming training data: endless duration-bucketed batches read from Parquet shards.

    stream = ShardStream(read_index(shard_dir), seed, StreamOptions(...), world_size, rank)
    for epoch, rows in stream.iterate(start): ...   # rows: shard rows (pipeline.training.shards)

Readers. The shards are dealt to `readers` readers (shard i to reader i % readers); process r of W owns
the readers g with g % W == r, so processes read disjoint shards. A process that owns several readers
alternates their micro-batches, so one process with R readers and gradient_accumulation_steps = R takes
the same optimizer steps as R processes with one micro-batch each.

Per reader and epoch, seeded by (seed, epoch, reader): the reader's shards in a shuffled order, their rows
in order, and every `pool_rows` rows a bucketing pass: the pool shuffled, sorted by duration, cut into
batches whose durations add up to at most batch_seconds (at most max_items rows; a longer row alone),
and those batches shuffled. Batches by total seconds hold about the same amount of speech, so a step
costs about the same whatever the clip lengths, and similar lengths share a batch (little padding).

Resume: micro-batch m of a process is a function of (seed, shards, options, m) only. `iterate(start)`
replays the readers' rows up to micro-batch `start` without loading any audio (metadata only: a few
seconds per million rows), so a resumed run trains on exactly the batches the uninterrupted one would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DictuneError
from pipeline.training.shards import ShardIndex

logger = logging.getLogger("dictune")

READ_ROWS = 1024  # rows per Parquet read


@dataclass(frozen=True)
class StreamOptions:
    batch_seconds: float = 80.0  # speech per micro-batch, at most (a longer single item forms its own)
    max_items: int = 32  # rows per micro-batch, at most
    readers: int = 0  # shard readers; 0 = one per process
    pool_rows: int = 2048  # rows bucketed together (sorted by duration, then cut)


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise DictuneError(f"{path}: not a readable Parquet shard ({str(e).splitlines()[0]})") from e
    for batch in handle.iter_batches(batch_size=READ_ROWS):
        yield from batch.to_pylist()


class ShardStream:
    def __init__(self, index: ShardIndex, seed: int, options: StreamOptions, world_size: int = 1, rank: int = 0):
        readers = options.readers or world_size
        if readers % world_size:
            raise DictuneError(f"train.stream_readers: {readers} readers for {world_size} processes; use a multiple")
        if len(index.shards) < readers:
            raise DictuneError(f"{index.directory}: {len(index.shards)} shard(s) for {readers} readers; write "
                               "smaller shards (train.rows_per_shard) so that every reader gets one")  # fmt: skip
        self.index, self.seed, self.options = index, seed, options
        self.readers = [g for g in range(readers) if g % world_size == rank]
        paths = index.paths()
        self.shards = {g: [p for i, p in enumerate(paths) if i % readers == g] for g in self.readers}
        self.rows_read = 0

    def reader_batches(self, reader: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Endless (epoch, batch of rows) of one reader."""
        shards, epoch = self.shards[reader], 0
        while True:
            rng = np.random.default_rng([self.seed, epoch, reader])
            pool: list[dict[str, Any]] = []
            for k in rng.permutation(len(shards)):
                for row in _rows(shards[k]):
                    self.rows_read += 1
                    pool.append(row)
                    if len(pool) >= self.options.pool_rows:
                        yield from ((epoch, batch) for batch in self._cut(pool, rng))
                        pool = []
            if pool:
                yield from ((epoch, batch) for batch in self._cut(pool, rng))
            epoch += 1

    def _cut(self, pool: list[dict[str, Any]], rng: np.random.Generator) -> list[list[dict[str, Any]]]:
        shuffled = [pool[i] for i in rng.permutation(len(pool))]
        rows = sorted(shuffled, key=lambda r: -r["duration"])  # stable: ties keep the shuffled order
        limit, most = self.options.batch_seconds, self.options.max_items
        batches, batch, total = [], [], 0.0
        for row in rows:
            if batch and (total + row["duration"] > limit or len(batch) >= most):
                batches.append(batch)
                batch, total = [], 0.0
            batch.append(row)
            total += row["duration"]
        if batch:
            batches.append(batch)
        return [batches[i] for i in rng.permutation(len(batches))]

    def iterate(self, start: int = 0) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Endless micro-batches (epoch, rows) of this process from micro-batch number `start` on."""
        k = len(self.readers)
        readers = []
        for j, reader in enumerate(self.readers):
            batches = self.reader_batches(reader)
            for _ in range(max(0, (start - j + k - 1) // k)):  # micro-batches m < start with m % k == j
                next(batches)
            readers.append(batches)
        micro = start
        while True:
            yield next(readers[micro % k])
            micro += 1


def streaming_wanted(setting: str, hours: float, min_hours: float) -> bool:
    """train.streaming: true, false, or auto (stream when the training data holds at least min_hours)."""
    setting = str(setting).lower()
    return setting == "true" or (setting == "auto" and hours >= min_hours)
