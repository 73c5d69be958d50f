"""Training steps of bigger Whisper sizes, LoRA against full fine-tuning: step time and peak memory.

    .venv/bin/python scripts/bench_big_models.py [--sizes small large-v3-turbo] [--modes lora full]
        [--adapt both] [--batch-size 2] [--steps 2] [--checkpointing] [--threads 0] [--flops] [--lora-targets ...]
        [--out bench/big_models.json]

Only tiny.en and base have weights here, so each size is a seeded random-weight model of the published
shape (`dictune model random SIZE`, pipeline/models/shapes.py), which costs the same compute and memory
as the real weights. Every (size, mode) runs in its own subprocess, through dictune's own training code:
pipeline.training.model_setup.setup_model (LoRA or full, on train.adapt, gradient checkpointing, SDPA)
and the training loss module, with AdamW (its states allocated at the first step, as in training),
precision as `train.precision=auto` picks it (bf16 autocast where the CPU or GPU has it). Inputs are
random 30 s log-mels and 32-token targets: the cost of a Whisper step does not depend on the audio.

Figures: s/step is the median wall time of the steps after the first (the first one allocates optimizer
states; with --steps 2 that is the one step after it), samples/s = batch / s/step; peak RSS is the
worker's VmHWM (/proc; ru_maxrss would carry the parent's size over a fork), peak CUDA memory
torch.cuda.max_memory_allocated on a GPU. Memory arithmetic printed beside it: weights, gradients and
AdamW states of the trainable parameters in fp32. With --flops: the step's GFLOP (torch.utils.flop_counter;
the share that is attention), the GFLOP/s it achieves, and the GFLOP/s of one plain matmul the size of
the model's largest linear in the same precision and threads: a reference for how far the step runs
from this machine's rate on a well-shaped matmul (not a proven peak).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "RESULT "
MODEL_CACHE = REPO / "data" / "random_models"  # random-weight models, made once (git-ignored)
LABEL_TOKENS = 32
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def worker(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from pipeline.procmem import proc_mb
    from pipeline.train_config import TrainConfig
    from pipeline.training.loss import WhisperSeq2SeqLoss
    from pipeline.training.model_setup import setup_model
    from pipeline.training.state import resolve_precision

    torch.manual_seed(0)
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = TrainConfig(mode=job["mode"], adapt=job["adapt"], gradient_checkpointing=job["checkpointing"],
                      learning_rate=1e-3 if job["mode"] == "lora" else 1e-5,
                      lora_target_modules=tuple(job.get("lora_targets") or LORA_TARGETS))  # fmt: skip
    bundle = setup_model(Path(job["model_dir"]), cfg)
    loss_module = WhisperSeq2SeqLoss(bundle.model, bundle.whisper, bundle.encoder_trainable).to(device)
    params = [p for p in loss_module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate)
    precision = resolve_precision("auto")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    config = bundle.whisper.config
    batch = job["batch_size"]
    features = torch.randn(batch, config.num_mel_bins, 3000, device=device)
    labels = torch.randint(0, 50000, (batch, LABEL_TOKENS), device=device)
    loss_module.train()
    if not bundle.encoder_trainable:
        bundle.whisper.model.encoder.eval()
    walls, losses = [], []

    def step(features: Any = features, labels: Any = labels) -> float:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_module(labels=labels, input_features=features)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return float(loss)

    for _ in range(job["steps"]):
        start = time.monotonic()
        losses.append(step())
        walls.append(time.monotonic() - start)
    trainable = sum(p.numel() for p in params)
    per_step = statistics.median(walls[1:] or walls)
    flops = {}
    if job.get("flops"):  # one more step of one sample, counted (a step's math is the batch times that)
        gflop, attention = step_gflop(lambda: step(features[:1], labels[:1]))
        gflop *= batch
        rows, width = batch * config.max_source_positions, config.d_model
        peak = matmul_gflops(rows, width, config.encoder_ffn_dim, dtype or torch.float32, device)
        flops = {"gflop_per_step": round(gflop, 1), "achieved_gflops": round(gflop / per_step, 1),
                 "matmul_gflops": round(peak, 1), "share_of_matmul": round(gflop / per_step / peak, 3),
                 "matmul_shape": [rows, width, config.encoder_ffn_dim], "attention_share": round(attention, 3)}  # fmt: skip
    return {
        "device": device.type, "precision": precision, "s_per_step": round(per_step, 3),
        "first_step_s": round(walls[0], 3), "samples_per_s": round(batch / per_step, 3),
        "step_s": [round(w, 3) for w in walls],
        "trainable_params": trainable, "total_params": bundle.total_params, "losses": [round(x, 4) for x in losses],
        "peak_rss_mb": round(proc_mb("VmHWM"), 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
        # fp32 weights of the whole model + gradient + two AdamW moments per trainable parameter
        "arithmetic_mb": round((bundle.total_params * 4 + trainable * 12) / 2**20, 1),
        **flops,
    }  # fmt: skip


def step_gflop(step: Any) -> tuple[float, float]:
    """The floating-point operations of one training step (forward, backward, optimizer), in GFLOP, as
    torch.utils.flop_counter counts them (matmuls, convolutions, attention). Attention runs through the math
    backend while counting, since the counter has no formula for the CPU flash kernel: the count is the
    model's math, without the flash backward's recomputation (the caller counts one sample, as the math
    backend's score matrices for a whole batch of a large model would not fit beside the run). Returns
    the GFLOP and the share of them that is attention."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        step()
    by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    total = counter.get_total_flops()
    # attention's two matmuls (scores, weighted values) and their gradients are the batched ones (aten.bmm)
    return total / 1e9, sum(n for op, n in by_op.items() if "bmm" in op) / max(total, 1)


def matmul_gflops(rows: int, inner: int, cols: int, dtype: Any, device: Any, reps: int = 5) -> float:
    """GFLOP/s of one plain matmul the size of the model's largest linear (encoder fc1 over the whole
    batch), in the step's precision, on the same threads: the reference rate the step's achieved
    GFLOP/s is set against."""
    import torch

    a = torch.randn(rows, inner, device=device).to(dtype)
    b = torch.randn(inner, cols, device=device).to(dtype)
    times = []
    for _ in range(reps + 1):
        start = time.monotonic()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.monotonic() - start)
    return 2 * rows * inner * cols / statistics.median(times[1:]) / 1e9


def model_dir(size: str) -> Path:
    from pipeline.models.shapes import random_model

    target = MODEL_CACHE / size
    if not (target / "config.json").is_file():
        print(f"building a random-weight {size} in {target}", file=sys.stderr)
        random_model(size, target)
    return target


def launch(job: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], stdout=subprocess.PIPE,
                              stderr=err, env=env, text=True, check=False)  # fmt: skip
        lines = [x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
        if proc.returncode != 0 or not lines:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            return {**job, "failed": f"exit status {proc.returncode}", "stderr_tail": tail}
    return {**job, **json.loads(lines[-1][len(RESULT_PREFIX) :])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small", "large-v3-turbo"])
    parser.add_argument("--modes", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    parser.add_argument("--adapt", default="both", choices=["encoder", "decoder", "both"])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (train.gradient_checkpointing)")
    parser.add_argument("--lora-targets", nargs="+", default=list(LORA_TARGETS),
                        help="LoRA target modules (bench_train.py's runs use dictune's default: q_proj v_proj)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each worker (0: torch's default)")
    parser.add_argument("--flops", action="store_true",
                        help="count one step's FLOPs and time a matmul the size of the largest linear beside it")
    parser.add_argument("--out", default="bench/big_models.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    from pipeline.files import atomic_write_json

    results = []
    print("| size | mode | trainable | s/step | samples/s | peak RSS MB | peak CUDA MB | fp32 w+g+Adam MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        directory = model_dir(size)
        for mode in args.modes:
            job = {"size": size, "mode": mode, "adapt": args.adapt, "model_dir": str(directory),
                   "batch_size": args.batch_size, "steps": args.steps, "checkpointing": args.checkpointing,
                   "threads": args.threads, "flops": args.flops, "lora_targets": args.lora_targets}  # fmt: skip
            r = launch(job)
            results.append(r)
            if "failed" in r:
                print(f"| {size} | {mode} | failed: {r['failed']} |||||| \n{r['stderr_tail']}", flush=True)
                continue
            cuda = "-" if r["peak_cuda_mb"] is None else f"{r['peak_cuda_mb']:.0f}"
            print(f"| {size} | {mode}-{args.adapt} | {r['trainable_params'] / 1e6:.1f} M | {r['s_per_step']:.2f} | "
                  f"{r['samples_per_s']:.2f} | {r['peak_rss_mb']:.0f} | {cuda} | {r['arithmetic_mb']:.0f} |", flush=True)  # fmt: skip
            if "gflop_per_step" in r:
                print(f"  {r['gflop_per_step']} GFLOP/step ({100 * r['attention_share']:.0f}% attention), "
                      f"{r['achieved_gflops']} GFLOP/s achieved; a "
                      f"{'x'.join(map(str, r['matmul_shape']))} matmul runs at {r['matmul_gflops']} GFLOP/s here: "
                      f"the step runs at {100 * r['share_of_matmul']:.0f}% of it", flush=True)  # fmt: skip
    atomic_write_json(args.out, {"batch_size": args.batch_size, "adapt": args.adapt, "runs": results})
    print(f"written {args.out}")
    return 0 if all("failed" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
