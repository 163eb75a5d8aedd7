#!/usr/bin/env bash
# The whole Hansard pipeline in one script: tokenizer + data (prepare) -> count tokens -> pick the recipe -> train.
#   bash train_hansard.sh                      # the default Hub corpus (common-pile/uk_hansard), every GPU here
#   DATASET=path/to/hansard.jsonl GPUS=1 bash train_hansard.sh
#   RECIPE=tiny DATASET=path/to/hansard.jsonl bash train_hansard.sh     # a CPU-sized run (without a GPU, the other
#                                                                        # recipes stop unless --allow_slow_cpu=true)
# Tokenizer and data go where the recipes look for them (hansard_hf.locations; $HANSARD_HF_HOME), the run to
# runs/<run name>. Extra arguments are recipe overrides, e.g. --report_to=none or --max_steps=100.
set -euo pipefail
cd "$(dirname "$0")"
DATASET=${DATASET:-common-pile/uk_hansard}
GPUS=${GPUS:-$( (nvidia-smi -L 2>/dev/null || true) | wc -l)}
EXTRA=("$@")
if [[ "$GPUS" -eq 0 ]]; then  # no GPU: one CPU process; the run prints the plan's time on this CPU before it starts
  GPUS=1
  EXTRA+=(--use_cpu=true --bf16=false)
  echo "no GPU here: training on the CPU (a GPU recipe takes days here; RECIPE=tiny is a CPU-sized run)"
  if [[ -z "${RECIPE:-}" && ! " $* " =~ " --allow_slow_cpu=true " ]]; then  # stop before the hours of data work
    echo "train_hansard.sh: the recipe the corpus size picks (d16 or larger) takes weeks on a CPU, so nothing was" \
         "started. For a CPU-sized run: RECIPE=tiny DATASET=path/to/hansard.jsonl bash train_hansard.sh; to train" \
         "the picked recipe here anyway, add --allow_slow_cpu=true." >&2
    exit 1
  fi
fi

if [[ -z "${RECIPE:-}" ]]; then
  # The size rule on training tokens: < 4B d16, 4-10B d24, 10-20B d36, > 20B d48.
  hansard-hf count-tokens --dataset="$DATASET"  # trains the tokenizer and prepares the data where the recipes look
  DEPTH=$(hansard-hf count-tokens --dataset="$DATASET" --json | python -c "import json, sys; print(json.load(sys.stdin)['seed_depth'])")
  RECIPE=d$DEPTH
fi
echo "training recipe $RECIPE on $GPUS process(es)"
export PET_SIGNALS_TO_HANDLE=SIGTERM,SIGINT,SIGUSR1  # passed on to the training processes: they stop at a checkpoint
export PET_SHUTDOWN_TIMEOUT=${PET_SHUTDOWN_TIMEOUT:-600}  # and are given this long to write it
LAUNCH=(accelerate launch --quiet --num_processes "$GPUS" --num_machines 1 --mixed_precision no --dynamo_backend no)
[[ "$GPUS" -gt 1 ]] && LAUNCH+=(--multi_gpu)  # bf16 comes from the recipe (TrainingArguments), not the launcher
"${LAUNCH[@]}" recipes/train.py "$RECIPE" --dataset="$DATASET" "${EXTRA[@]}"
