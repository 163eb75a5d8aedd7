#!/usr/bin/env bash
# The whole Hansard pipeline in one script: tokenizer -> prepare -> count tokens -> pick the recipe -> train.
#   bash train_hansard.sh                      # the default Hub corpus (common-pile/uk_hansard), 8 GPUs
#   DATASET=path/to/hansard.jsonl GPUS=1 bash train_hansard.sh
#   RECIPE=recipes/tiny.json DATASET=path/to/hansard.jsonl bash train_hansard.sh   # a CPU-sized run
set -euo pipefail
cd "$(dirname "$0")"
DATASET=${DATASET:-common-pile/uk_hansard}
GPUS=${GPUS:-$( (nvidia-smi -L 2>/dev/null || true) | wc -l)}
EXTRA=("$@")
if [[ "$GPUS" -eq 0 ]]; then  # no GPU: one CPU process (try a small recipe: RECIPE=recipes/tiny.json)
  GPUS=1
  EXTRA+=(--use_cpu=true --bf16=false)
fi

if [[ -n "${RECIPE:-}" ]]; then  # the recipe names its own tokenizer and data; train.py builds them when missing
  hansard-hf train "$RECIPE" --dataset="$DATASET" "${EXTRA[@]}"
  exit 0
fi

TOKENIZER=${TOKENIZER:-${HANSARD_HF_HOME:-$HOME/.cache/hansard_hf}/tokenizer}
DATA=${DATA:-${HANSARD_HF_HOME:-$HOME/.cache/hansard_hf}/data}
[[ -f "$TOKENIZER/tokenizer.json" ]] || hansard-hf tokenizer train --dataset "$DATASET" --out "$TOKENIZER"
hansard-hf prepare --dataset "$DATASET" --tokenizer "$TOKENIZER" --out "$DATA"
hansard-hf count-tokens --data "$DATA"

# The seed's guidance on training tokens: < 4B d16, 4-10B d24, 10-20B d36, > 20B d48.
TOKENS=$(python -c "from hansard_hf.counting import split_counts; print(split_counts('$DATA')['train']['tokens'])" | tail -n 1)
DEPTH=$(python -c "from hansard_hf.counting import seed_choice; print(seed_choice($TOKENS))" | tail -n 1)
echo "training recipes/d$DEPTH.json on $GPUS GPU(s)"
LAUNCH=(accelerate launch --num_processes "$GPUS" --num_machines 1 --mixed_precision no --dynamo_backend no)
[[ "$GPUS" -gt 1 ]] && LAUNCH+=(--multi_gpu)  # bf16 comes from the recipe (TrainingArguments), not the launcher
"${LAUNCH[@]}" recipes/train.py "recipes/d$DEPTH.json" \
  --dataset="$DATASET" --tokenizer_dir="$TOKENIZER" --data_dir="$DATA" "${EXTRA[@]}"
