"""The training loop: a small Trainer class in the torchtune recipe shape.

    trainer = Trainer(config, model_dir)      # _setup_accelerator/_model/_data/_optimizer
    summary = trainer.train()                 # resume?, steps, dev evaluations, checkpoints, export

It runs unchanged on one CPU, one GPU or under `accelerate launch` (DDP): every process runs the same
code; the batch plan gives each rank its own slice of every global batch; the main process alone
evaluates on dev, writes logs and exports, and tells the others whether to stop early.

Determinism: before each optimizer step every RNG (python, numpy, torch) is seeded from (seed, step,
rank), and the data order and augmentation derive from (seed, epoch, item). A run resumed from a
checkpoint therefore continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config
from pipeline.errors import DictuneError
from pipeline.files import atomic_write_json
from pipeline.training import checkpoint as ckpt
from pipeline.training.data import AugmentOptions
from pipeline.training.evaluation import EvalContext, evaluate_split
from pipeline.training.inputs import TrainingInputs
from pipeline.training.loss import WhisperSeq2SeqLoss
from pipeline.training.model_setup import setup_model
from pipeline.training.state import LoopState, resolve_precision
from pipeline.typed_yaml import config_to_dict

logger = logging.getLogger("dictune")

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
LOG_DIR = "logs"
SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


class Trainer:
    def __init__(
        self,
        config: Config,
        model_dir: str | Path,
        out_dir: str | Path | None = None,
        progress: bool = True,
        on_step_end: Callable[[int], None] | None = None,
    ):
        self.config = config
        self.cfg = config.train
        self.model_dir = Path(model_dir)
        self.out_dir = Path(out_dir) if out_dir else config.stage_dir("train")
        self.progress = progress
        self.on_step_end = on_step_end  # called with the step number after each step (tests, tools)
        self.accelerator = self._setup_accelerator()
        self._prepare_out_dir()
        self._setup_model()
        self._setup_data()
        self._setup_optimizer()
        self.state = LoopState(world_size=self.accelerator.num_processes)

    # ------------------------------------------------------------------------------------------ setup

    def _setup_accelerator(self) -> Any:
        import torch
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)  # allow a new precision in the same process
        self.precision = resolve_precision(self.cfg.precision)
        # cpu=True on machines without CUDA: accelerate then runs DDP over gloo when launched with
        # several processes (`accelerate launch --multi_gpu --num_processes N` or torchrun)
        accelerator = Accelerator(
            mixed_precision=self.precision,
            step_scheduler_with_optimizer=False,
            cpu=not torch.cuda.is_available(),
        )
        ckpt.register_hooks(accelerator)
        return accelerator

    def _prepare_out_dir(self) -> None:
        """A fresh run starts without the old checkpoints, best weights and logs; a resume keeps them."""
        if self.accelerator.is_main_process:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not self.cfg.resume:
                for name in (CHECKPOINT_DIR, BEST_DIR, LOG_DIR):
                    shutil.rmtree(self.out_dir / name, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _setup_model(self) -> None:
        import torch

        torch.manual_seed(self.config.seed)  # LoRA's random init: the same for a given seed, on every rank
        self.bundle = setup_model(self.model_dir, self.cfg)
        self.whisper = self.bundle.whisper
        self.augment_options = AugmentOptions(
            self.cfg.augment_prob,
            self.cfg.noise,
            self.cfg.noise_snr_db,
            self.cfg.speed,
            self.cfg.speed_range,
            self.cfg.gain,
            self.cfg.gain_db,
        )
        self.loss_module = WhisperSeq2SeqLoss(self.bundle.model, self.whisper, self.bundle.encoder_trainable)
        self.loss_module.to(self.accelerator.device)

    def _setup_data(self) -> None:
        self.data = TrainingInputs(self.config, self.bundle, self.accelerator, self.out_dir, self.augment_options,
                                   self.precision, self.progress)  # fmt: skip

    @property
    def use_cache(self) -> bool:
        return self.data.use_cache

    @property
    def dev(self) -> list:
        return self.data.dev

    @property
    def general_dev(self) -> list:
        return self.data.general_dev

    def _setup_optimizer(self) -> None:
        import torch
        from transformers import get_scheduler

        params = [p for p in self.loss_module.parameters() if p.requires_grad]
        try:
            optimizer = torch.optim.AdamW(
                params, lr=self.cfg.learning_rate, weight_decay=self.cfg.weight_decay, fused=True
            )
        except (RuntimeError, TypeError):  # no fused kernel for this device / build
            optimizer = torch.optim.AdamW(
                params, lr=self.cfg.learning_rate, weight_decay=self.cfg.weight_decay
            )
        scheduler = get_scheduler(
            SCHEDULERS[self.cfg.lr_scheduler],
            optimizer,
            num_warmup_steps=min(self.cfg.warmup_steps, self.cfg.max_steps),
            num_training_steps=self.cfg.max_steps,
        )
        self.loss_module, self.optimizer, self.scheduler = self.accelerator.prepare(
            self.loss_module, optimizer, scheduler
        )
        self.params = params

    # ------------------------------------------------------------------------------------------ loop

    def train(self) -> dict[str, Any]:
        """Train to max_steps (or early stop), then export; returns the summary also written to metrics.json."""
        from tqdm.auto import tqdm

        acc, cfg = self.accelerator, self.cfg
        wall_start = time.monotonic()
        self._maybe_resume()
        if acc.is_main_process:
            atomic_write_json(self.out_dir / "train_config.json", self.resolved_config())
        writer = self._writer()
        batches = iter(self.data.loader(start=self.state.step * cfg.gradient_accumulation_steps))
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.state.step,
            desc="train",
            unit="step",
            disable=not (self.progress and acc.is_main_process),
            dynamic_ncols=True,
        )
        running, since_log, last_saved = 0.0, 0, self.state.step
        while self.state.step < cfg.max_steps and not self.state.stopped_early:
            started = time.monotonic()
            loss, rows = self._train_step(batches)
            self.state.step += 1
            self.state.samples += rows * acc.num_processes  # this process's rows (streamed batches vary in size)
            self.state.train_seconds += time.monotonic() - started
            running, since_log = running + loss, since_log + 1
            step = self.state.step
            if step % max(1, cfg.log_steps) == 0 or step == cfg.max_steps:
                bar.set_postfix(loss=f"{self._log_train(writer, running / since_log):.3f}")
                running, since_log = 0.0, 0
            bar.update(1)
            if cfg.eval_steps and step % cfg.eval_steps == 0 and step < cfg.max_steps:
                self.evaluate(writer)
            if cfg.save_steps and step % cfg.save_steps == 0 and step < cfg.max_steps:
                self.save_checkpoint()
                last_saved = step
            if self.on_step_end is not None:
                self.on_step_end(step)
        bar.close()
        if not self.state.evaluations or self.state.evaluations[-1]["step"] != self.state.step:
            self.evaluate(writer)
        if last_saved != self.state.step:
            self.save_checkpoint()
        summary = self._finish(time.monotonic() - wall_start)
        if writer is not None:
            writer.close()
        return summary

    def _log_train(self, writer: Any, loss: float) -> float:
        """Mean loss over processes (a collective: every rank calls it at the same steps), to TensorBoard."""
        mean = float(self.accelerator.reduce(self._tensor(loss), "mean"))
        seconds = self.state.train_seconds
        values = {"train/loss": mean, "train/lr": self.scheduler.get_last_lr()[0]}
        self._log(writer, {**values, "train/samples_per_s": self.state.samples / seconds if seconds else 0.0})
        return mean

    def _train_step(self, batches: Any) -> tuple[float, int]:
        acc, accum = self.accelerator, self.cfg.gradient_accumulation_steps
        self._seed_step(self.state.step)
        self._train_mode()
        total, rows = 0.0, 0
        for micro in range(accum):
            batch = next(batches)
            rows += len(batch["labels"])
            sync = contextlib.nullcontext() if micro == accum - 1 else acc.no_sync(self.loss_module)
            with sync:
                loss = self.loss_module(**self._inputs(batch))
                acc.backward(loss / accum)
            total += float(loss.detach())
        if self.cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / accum, rows

    def _inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        device = self.accelerator.device
        out = {"labels": batch["labels"].to(device)}
        for key in ("input_features", "encoder_hidden_states", "decoder_input_ids"):
            if key in batch:
                out[key] = batch[key].to(device)
        return out

    def _seed_step(self, step: int) -> None:
        import torch

        seed = (self.config.seed * 1_000_003 + step * 64 + self.accelerator.process_index) % (2**32)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _train_mode(self) -> None:
        self.loss_module.train()
        if not self.bundle.encoder_trainable:
            self.whisper.model.encoder.eval()  # a frozen encoder computes what the cache holds

    def _tensor(self, value: float) -> Any:
        import torch

        return torch.tensor(value, device=self.accelerator.device)

    # ------------------------------------------------------------------------------------------ dev

    def evaluate(self, writer: Any = None) -> dict[str, Any] | None:
        """Dev scores on the main process, shared with all; updates best/early-stopping state."""
        if not self.dev and not self.general_dev:
            return None
        acc = self.accelerator
        result = self._evaluate_main() if acc.is_main_process else None
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            result = broadcast_object_list([result], from_process=0)[0]
        result["step"] = self.state.step
        self._log(writer, {f"dev/{k}": v for k, v in result.items() if isinstance(v, float)})
        improved = self.state.record(result, self.cfg.early_stopping_patience, self.cfg.max_steps)
        if improved and acc.is_main_process:
            ckpt.save_trainable(self.loss_module, self.out_dir / BEST_DIR / ckpt.WEIGHTS_NAME)
            atomic_write_json(self.out_dir / BEST_DIR / "best.json", result)
        return result

    def _evaluate_main(self) -> dict[str, Any]:
        core = ckpt.unwrap(self.loss_module)
        core.eval()
        ctx = EvalContext(
            core,
            self.bundle.processor,
            self.data.collator,
            self.accelerator.autocast,
            self.accelerator.device,
            self.cfg.eval_batch_size,
            self.cfg.generation_max_new_tokens,
            self.cfg.language if self.bundle.is_multilingual else None,
            self.data.terms,
            self.data.cache,
        )
        result: dict[str, Any] = {}
        for name, items in (("dev", self.dev), ("general", self.general_dev)):
            if items:
                result.update(evaluate_split(ctx, items).to_dict(prefix=f"{name}_"))
        self._train_mode()
        return result

    # ------------------------------------------------------------------------------------------ state

    def save_checkpoint(self) -> Path:
        protect = self.state.best_step
        return ckpt.save_checkpoint(
            self.accelerator,
            self.out_dir / CHECKPOINT_DIR,
            self.state.step,
            asdict(self.state),
            self.cfg.keep_checkpoints,
            protect,
        )

    def _maybe_resume(self) -> None:
        if not self.cfg.resume:
            return
        path = ckpt.latest_checkpoint(self.out_dir / CHECKPOINT_DIR)
        if path is None:
            logger.warning("train.resume=true but no checkpoint in %s: starting from step 0", self.out_dir)
            return
        state = LoopState(**ckpt.read_state(path))
        if state.world_size != self.accelerator.num_processes:
            raise DictuneError(
                f"{path}: saved by {state.world_size} process(es), resumed with {self.accelerator.num_processes}; "
                "resume with the same number of processes"
            )
        self.accelerator.load_state(str(path))
        self.state = state
        logger.info("resumed from %s (step %d)", path, state.step)

    def resolved_config(self) -> dict[str, Any]:
        return {
            "config": config_to_dict(self.config),
            "resolved": {
                "model_dir": str(self.model_dir),
                "precision": self.precision,
                "encoder_cache": self.use_cache,
                "world_size": self.accelerator.num_processes,
                "is_multilingual": self.bundle.is_multilingual,
                "encoder_cache_plan": self.data.cache_plan and self.data.cache_plan.reason,
                "train_items": self.data.n_train,
                "replay_items": self.data.n_replay,
                "dev_items": len(self.dev),
                "general_dev_items": len(self.general_dev),
                "rejected_items": len(self.data.rejects),
            },
        }

    def mode_name(self) -> str:
        return f"{self.cfg.mode}-{self.cfg.adapt}" + ("-cached" if self.use_cache else "")

    # ------------------------------------------------------------------------------------------ output

    def _writer(self) -> Any:
        if not self.accelerator.is_main_process:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.out_dir / LOG_DIR))

    def _log(self, writer: Any, values: dict[str, float]) -> None:
        if writer is None:
            return
        for key, value in values.items():
            if value is not None:
                writer.add_scalar(key, value, self.state.step)
        writer.flush()

    def _finish(self, wall_seconds: float) -> dict[str, Any]:
        from pipeline.training.export import export_adapter, export_full, export_merged_from_adapter

        acc = self.accelerator
        acc.wait_for_everyone()
        self.data.finish()
        summary = self._summary(wall_seconds)
        best = self.out_dir / BEST_DIR / ckpt.WEIGHTS_NAME
        if self.cfg.export_best and self.state.best_step is not None and best.is_file():
            ckpt.load_trainable(self.loss_module, best)  # every rank: all end with the exported weights
        if acc.is_main_process:
            model, processor = self.bundle.model, self.bundle.processor
            if self.cfg.mode == "lora":
                adapter = export_adapter(model, processor, self.out_dir / "adapter")
                if self.cfg.merge:
                    export_merged_from_adapter(self.model_dir, adapter, processor, self.out_dir / "merged")
            else:
                export_full(self.whisper, self.model_dir, processor, self.out_dir / "merged")
            atomic_write_json(self.out_dir / "metrics.json", summary)
        acc.wait_for_everyone()
        return summary

    def _summary(self, wall_seconds: float) -> dict[str, Any]:
        return {
            "mode": self.mode_name(),
            "precision": self.precision,
            **self.state.summary(wall_seconds),
            "trainable_params": self.bundle.trainable_params,
            "total_params": self.bundle.total_params,
            **self.data.summary(),
            "exported": "best" if self.cfg.export_best and self.state.best_step is not None else "last",
        }
