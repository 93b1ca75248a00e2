#!/usr/bin/env bash
# Trainer speed on one CUDA GPU: the shapes of issue-sized models, random weights.
#
#   benchmarks/gpu_train.sh CASE TOKENIZER_DIR DATA [OUT_DIR]
#
# CASE is one of
#   codellama-ckpt   Code Llama 7B shape, bf16 LoRA, batch 8 x 2048, gradient checkpointing
#   codellama        Code Llama 7B shape, batch 4 x 2048, no checkpointing
#   gemma-270m       Gemma 3 270M shape, batch 16 x 1024
#   tiny             Gemma 3 270M shape, batch 2 x 128, 3 steps: a rehearsal on a CPU
#   coder            `make coder`'s training (trainer/configs/kodcu-coder-270m.yaml, all
#                    of it: hygiene, 1 epoch) over random weights of the default model's
#                    shape: its time on this machine; needs MBPP=mbpp.jsonl
#   coder-tiny       the same, 2 steps: a rehearsal on a CPU
# TOKENIZER_DIR is a Hugging Face tokenizer folder (the default model's); a shape with a
# smaller vocabulary gets a tokenizer of its own size (benchmarks/random_models.py).
# DATA is Alpaca rows (Code Alpaca's code_alpaca_2k.json). Each case but the coder ones
# runs every side (benchmarks/train.py) in one call (not yet timed on a GPU with all seven
# sides and the profiles; allow up to 10 minutes); the table goes to stdout and
# OUT_DIR/CASE.json. Each side also profiles one step (left out of its timing) into
# OUT_DIR/profile-CASE: where a side's step waits (GPU syncs, the GPU's busy share),
# next to the baselines'. kodcu-full-loss (unpacked, the model's own loss) tells the
# output layer's share of the unpacked side's time from the rest.
#
# SIDES="hf trl-liger kodcu-packed" runs only those sides: a Code Llama case loads 13.5 GB
# of weights per side, and seven sides may not fit one 10-minute call.
#
# A GPU machine without network: benchmarks/gpu_offline.sh packs what its image lacks
# (TRL, datasets, Liger, and transformers and PEFT at the versions tested here), the
# tokenizer and the rows, and runs this script there.
set -euo pipefail
case_name=$1 tokenizer=$2 data=$3 out=${4:-.}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

# The time of a training run depends on the model's shape and the tokens, not on the
# weights' values, and the default model's weights are too large to carry to a GPU
# machine without network: so the coder's recipe runs over random weights of its shape.
coder() {  # coder [KEY=VALUE ...]: overrides of the recipe, as kodcu-train takes them
  local mbpp=${MBPP:?the coder cases need MBPP=mbpp.jsonl (the file make coder takes)}
  local recipe="$root/trainer/configs/kodcu-coder-270m.yaml" work start end
  work=$(mktemp -d)
  export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
  python3 -c 'import sys
from benchmarks.random_models import random_model
random_model("gemma3-270m", sys.argv[1], sys.argv[2])' "$tokenizer" "$work/base"
  start=$(date +%s.%N)
  # The recipe's MBPP sources read the local file, as the Makefile's CODER_DATA has them.
  PYTHONUNBUFFERED=1 python3 -m trainer "$recipe" model.base="$work/base" \
    training.output_dir="$work/adapter" data.sources.0.path="$mbpp" \
    data.sources.1.path="$mbpp" data.sources.2.path="$mbpp" hygiene.mbpp_path="$mbpp" "$@"
  end=$(date +%s.%N)
  mkdir -p "$out"
  cp "$work/adapter/kodcu.json" "$out/$case_name.kodcu.json"
  python3 - "$out/$case_name.kodcu.json" "$start" "$end" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["metrics"]
print(f"{sys.argv[1]}: kodcu-train took {float(sys.argv[3]) - float(sys.argv[2]):.0f} s in all "
      f"(loading, hygiene, training, writing); training {run['runtime_s']} s, "
      f"{run['tokens_per_s']} tokens/s")
PY
  rm -rf "$work"
}

case $case_name in
  codellama-ckpt) args=(--random codellama-7b --batch 8 --seq 2048 --steps 6 --checkpointing) ;;
  codellama)      args=(--random codellama-7b --batch 4 --seq 2048 --steps 6) ;;
  gemma-270m)     args=(--random gemma3-270m --batch 16 --seq 1024 --steps 10) ;;
  tiny)           args=(--random gemma3-270m --batch 2 --seq 128 --steps 3 --rows 32 --heldout 4) ;;
  coder)          coder; exit ;;
  coder-tiny)     coder training.max_steps=2; exit ;;
  *) echo "unknown case $case_name: codellama-ckpt, codellama, gemma-270m, tiny, coder or coder-tiny" >&2
     exit 2 ;;
esac
if [ -n "${SIDES:-}" ]; then
  read -r -a sides <<< "$SIDES"
else
  sides=(hf trl)
  if python3 -c 'import torch, liger_kernel; assert torch.cuda.is_available()' 2>/dev/null; then sides+=(trl-liger); fi
  sides+=(kodcu kodcu-full-loss kodcu-packed kodcu-packed-full-loss)
fi
mkdir -p "$out"
PYTHONUNBUFFERED=1 python3 "$here/train.py" "${args[@]}" --tokenizer "$tokenizer" --data "$data" \
  --sides "${sides[@]}" --json "$out/$case_name.json" --profile "$out/profile-$case_name"
