#!/usr/bin/env bash
# The prepared GPU check (issue "Scale"): samples/s and peak memory of LoRA against full fine-tuning on
# random-weight Whisper small and large-v3-turbo shapes, bf16, and the Hugging Face Seq2SeqTrainer recipe
# beside dictune's Trainer on the same data and LoRA config. Writes bench/gpu.json. Sized for < 8 minutes
# on one GPU; it needs this project's virtualenv (make install) and no network (random weights).
#
#   scripts/gpu_check.sh                        # on a GPU machine
#   GPU_CHECK_ALLOW_CPU=1 GPU_CHECK_SIZES=tiny.en GPU_CHECK_STEPS=2 GPU_CHECK_BATCH=2 scripts/gpu_check.sh
#                                               # the same path on CPU, tiny (a check of the script)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SIZES=${GPU_CHECK_SIZES:-small large-v3-turbo}
STEPS=${GPU_CHECK_STEPS:-20}       # optimizer steps of each recipe run
BATCH=${GPU_CHECK_BATCH:-16}       # items per step
OUT=${GPU_CHECK_OUT:-bench/gpu.json}
DIR=$(dirname "$OUT")/gpu_parts
export HF_HUB_OFFLINE=1
if ! $PY -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  if [ -z "${GPU_CHECK_ALLOW_CPU:-}" ]; then
    echo "gpu_check: no CUDA device (set GPU_CHECK_ALLOW_CPU=1 to run the same steps on CPU)" >&2
    exit 2
  fi
fi
mkdir -p "$DIR"
$PY -c 'import torch; print("gpu_check: torch", torch.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
# 1. LoRA vs full fine-tuning (encoder + decoder), one model per size, 5 steps each
# shellcheck disable=SC2086
$PY scripts/bench_big_models.py --sizes $SIZES --modes lora full --batch-size "$BATCH" --steps 5 \
  --out "$DIR/big_models.json"
# 2. the Hugging Face recipe beside dictune's Trainer, same LoRA config, data and batches
for size in $SIZES; do
  $PY scripts/bench_train.py --model "data/random_models/$size" --runs hf-reference dictune-both hf-decoder dictune-default \
    --steps "$STEPS" --batch-size "$BATCH" --warmup 2 --threads 4 --precision bf16 --out "$DIR/train-$size.json"
done
$PY - "$OUT" "$DIR" $SIZES <<'PYEOF'
import json, sys
from pathlib import Path
from pipeline.files import atomic_write_json
out, parts, sizes = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
result = {"lora_vs_full": json.loads((parts / "big_models.json").read_text()),
          "recipes": {s: json.loads((parts / f"train-{s}.json").read_text()) for s in sizes}}
atomic_write_json(out, result)
print("gpu_check: written", out)
PYEOF
