#!/usr/bin/env bash
# Issue 7's GPU figures on one GPU, one part per device call (each should end within 10 minutes on an H100, compile
# warm-up included); logs go to $OUT (or bench/gpu_logs). Record what they print in bench/RESULTS.md with the machine
# and the date. Most important first, for a session with little device time:
#
#   bash bench/gpu_suite.sh tests     # tests/test_gpu.py + the CUDA no-sync test: bf16, compile, peak memory d16-d48
#   bash bench/gpu_suite.sh d24       # tokens/s, MFU, step time, peak memory; HansardTrainer vs the plain loop
#   bash bench/gpu_suite.sh d36       # the same, Trainer only (automatic activation checkpointing)
#   bash bench/gpu_suite.sh nanochat  # d24 vs nanochat's base_train loop (needs .nanochat, see bench/vs_nanochat.py)
#   bash bench/gpu_suite.sh d16 | d48
#   bash bench/gpu_suite.sh issue15   # one call, <= 8 minutes: d24 and d48 under DDP and FSDP2 (accelerate, 1 process;
#                                     # one micro-step per optimizer step), then tests/test_gpu.py
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/gpu_logs}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTORCH_ALLOC_CONF=expandable_segments:True
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # hansard_hf from this checkout, installed or not
run() {  # run NAME COMMAND...: the command's output on the console and in $out/NAME.log
    local name=$1
    shift
    echo "== $*" | tee "$out/$name.log"
    "$@" 2>&1 | tee -a "$out/$name.log"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  date -u; } | tee "$out/machine.txt"
case "${1:-}" in
    tests) run tests python3 -m pytest -q -s -p no:cacheprovider tests/test_gpu.py tests/test_host_syncs.py ;;
    d16 | d24) run "throughput_$1" python3 bench/throughput.py "recipes/$1.json" --steps 10 --warmup 3 --reference loop ;;
    d36) run throughput_d36 python3 bench/throughput.py recipes/d36.json --steps 7 --warmup 2 ;;
    d48) run throughput_d48 python3 bench/throughput.py recipes/d48.json --steps 5 --warmup 2 ;;
    nanochat)
        run vs_nanochat_d24 python3 bench/vs_nanochat.py --nanochat .nanochat recipes/d24.json --steps 10 --warmup 3 \
            --device_batch_size=32 ;;
    issue15)
        for depth in 24 48; do
            micro=$(python3 -c "import json; print(json.load(open('recipes/d$depth.json'))['device_batch_size'])")
            one="--total_batch_size=$((micro * 2048))"  # tokens/s do not depend on the accumulation
            run "ddp_d$depth" timeout 90 python3 bench/throughput.py "recipes/d$depth.json" --steps 6 --warmup 2 "$one"
            run "fsdp2_d$depth" timeout 100 python3 -m accelerate.commands.launch --config_file accelerate_fsdp2.yaml \
                --num_processes 1 bench/throughput.py "recipes/d$depth.json" --steps 6 --warmup 2 "$one"
        done
        run tests timeout 80 python3 -m pytest -q -s -p no:cacheprovider tests/test_gpu.py ;;
    *) echo "usage: bash bench/gpu_suite.sh tests|d16|d24|d36|d48|nanochat|issue15" >&2; exit 2 ;;
esac
