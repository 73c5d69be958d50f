"""The loop's own state (saved in every checkpoint), best-checkpoint and early-stopping bookkeeping,
precision resolution, and the final summary written to metrics.json."""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("dictune")


@dataclass
class LoopState:
    step: int = 0  # optimizer steps done
    samples: int = 0  # training items seen, all processes together
    train_seconds: float = 0.0  # time inside training steps (no evaluation, no checkpointing)
    best_score: float | None = None  # lowest dev term error (dev WER without a lexicon)
    best_step: int | None = None
    best: dict[str, Any] = field(default_factory=dict)  # dev scores at best_step
    bad_evals: int = 0  # evaluations since the last improvement
    stopped_early: bool = False
    world_size: int = 1
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    def record(self, result: dict[str, Any], patience: int, max_steps: int) -> bool:
        """Add an evaluation; True when it is the best so far. Sets stopped_early after `patience`
        evaluations without improvement (0 = never)."""
        self.evaluations.append(result)
        value = result.get("dev_term_error")
        value = result.get("dev_wer") if value is None else value
        if value is None:
            return False
        if self.best_score is None or value < self.best_score:
            self.best_score, self.best_step, self.best, self.bad_evals = value, self.step, dict(result), 0
            return True
        self.bad_evals += 1
        if patience and self.bad_evals >= patience and self.step < max_steps:
            logger.info("early stop at step %d: no better dev score in %d evaluations", self.step, patience)
            self.stopped_early = True
        return False

    def summary(self, wall_seconds: float) -> dict[str, Any]:
        """The loop's part of metrics.json."""
        return {
            "steps": self.step,
            "stopped_early": self.stopped_early,
            "world_size": self.world_size,
            "samples": self.samples,
            "train_seconds": round(self.train_seconds, 3),
            "wall_seconds": round(wall_seconds, 3),
            "samples_per_second": round(self.samples / self.train_seconds, 4) if self.train_seconds else None,
            "seconds_per_step": round(self.train_seconds / self.step, 4) if self.step else None,
            "peak_rss_mb": peak_rss_mb(),
            "best_step": self.best_step,
            "best_dev_term_error": self.best.get("dev_term_error"),
            "best_dev_wer": self.best.get("dev_wer"),
            "best_general_wer": self.best.get("general_wer"),
            "final": self.evaluations[-1] if self.evaluations else None,
        }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports ru_maxrss in KB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


GPU_LOADER_WORKERS = 4  # measured: the in-process loader left an H200 idle (README, GPU check)


def resolve_loader_workers(requested: int | str, on_cuda: bool, cpus: int | None, local_processes: int = 1) -> int:
    """train.num_workers: a count as given; auto: 0 on CPU, where loader processes would take cores from
    the math, and on CUDA up to GPU_LOADER_WORKERS per training process, sharing the node's cores among
    its `local_processes` (one per GPU) and leaving one core to each."""
    if str(requested).lower() != "auto":
        return int(requested)
    share = (cpus or 1) // max(1, local_processes)
    return min(GPU_LOADER_WORKERS, max(0, share - 1)) if on_cuda else 0


def resolve_precision(requested: str) -> str:
    """accelerate's mixed_precision value: 'bf16', 'fp16' or 'no'.

    auto: bf16 on a GPU that has it (Ampere and later: fp16's range without its loss scaling), fp16 on
    older GPUs; bf16 on a CPU with native bf16 (AVX512-BF16 or AMX: ~1.7x faster steps than fp32 here);
    else fp32.
    """
    import torch

    requested = requested.lower()
    if requested == "fp32":
        return "no"
    if requested in ("bf16", "fp16"):
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    cpu = getattr(torch, "cpu", None)
    supported = cpu is not None and (cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    return "bf16" if supported else "no"
