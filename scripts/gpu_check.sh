#!/usr/bin/env bash
# The prepared GPU check (issue "Scale"): samples/s and peak memory of LoRA against full fine-tuning on
# random-weight Whisper small and large-v3-turbo shapes, bf16, and the Hugging Face Seq2SeqTrainer recipe
# beside dictune's Trainer on the same data and LoRA config. Writes bench/gpu.json. Sized for < 8 minutes
# on one GPU; it needs this project's virtualenv (make install) and no network (random weights).
#
#   scripts/gpu_check.sh                        # on a GPU machine
#   GPU_CHECK_ALLOW_CPU=1 GPU_CHECK_SIZES=tiny.en GPU_CHECK_STEPS=2 GPU_CHECK_BATCH=2 scripts/gpu_check.sh
#                                               # the same path on CPU, tiny (a check of the script)
#
# A machine without the builtin weights (a lent GPU machine: no network, no make install) gets the random
# models' config and tokenizer files in data/random_models/SIZE and refills their seeded weights here
# (pipeline.models.shapes.refill_weights); PY=python3 runs it on that machine's own torch. A part that
# fails is reported and the others still run; the exit status is 1 then.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=${PY:-.venv/bin/python}; else PY=${PY:-python3}; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
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
failed=0
part() {  # part NAME COMMAND...: run one part; a failure is reported and counted, the rest still run
  local name=$1; shift
  echo "gpu_check: part $name" >&2
  "$@" || { echo "gpu_check: part $name FAILED (exit $?)" >&2; failed=1; }
}
$PY -c 'import torch, transformers, peft; print("gpu_check: torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
for size in $SIZES; do
  if [ -f "data/random_models/$size/config.json" ]; then
    $PY -c 'import sys; from pipeline.models.shapes import refill_weights; print("gpu_check: refilled", sys.argv[1]) if refill_weights(sys.argv[1]) else None' "data/random_models/$size" || failed=1
  fi
done
# 1. LoRA vs full fine-tuning (encoder + decoder), one model per size, 5 steps each, with the step's FLOPs
#    and a matmul of its largest linear beside it (how far from the GPU's best it runs)
# shellcheck disable=SC2086
part big_models $PY scripts/bench_big_models.py --sizes $SIZES --modes lora full --batch-size "$BATCH" --steps 5 --flops \
  --out "$DIR/big_models.json"
# 2. the Hugging Face recipe beside dictune's Trainer, same LoRA config, data and batches
for size in $SIZES; do
  part "train-$size" $PY scripts/bench_train.py --model "data/random_models/$size" \
    --runs hf-reference hf-reference-w4 dictune-both hf-decoder hf-decoder-w4 dictune-default \
    --steps "$STEPS" --batch-size "$BATCH" --warmup 2 --threads 4 --precision bf16 --out "$DIR/train-$size.json"
done
$PY - "$OUT" "$DIR" $SIZES <<'PYEOF'
import json, sys
from pathlib import Path
from pipeline.files import atomic_write_json
out, parts, sizes = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
def read(name):
    path = parts / name
    return json.loads(path.read_text()) if path.is_file() else {"missing": f"{path} (the part failed)"}
result = {"lora_vs_full": read("big_models.json"), "recipes": {s: read(f"train-{s}.json") for s in sizes}}
atomic_write_json(out, result)
print("gpu_check: written", out)
PYEOF
exit $failed
