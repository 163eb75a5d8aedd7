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
#   bash bench/gpu_suite.sh issue30   # ONE call of at most 8 minutes, each part under its own timeout (sum 470 s):
#       the GPU tests; d24 (Trainer and plain loop), d36, d48 one process; d24 under FSDP2 (accelerate, 1 process);
#       one step of d24-2026; hansard-hf train stopped by SIGTERM on the GPU and rerun; d16 (Trainer and plain loop).
#       Throughput parts run one micro-step per optimizer step (tokens/s then count the optimizer step in full: a
#       lower bound for the recipes' accumulation) and print every step, so a part cut short still leaves figures.
#
# Wheels in .whl (carried: the device image lacks datasets and has transformers 5.17, see bench/RESULTS.md) are
# installed into /tmp/site first, then this checkout (editable, no dependencies, offline).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/gpu_logs}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTORCH_ALLOC_CONF=expandable_segments:True
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# hansard_hf from this checkout, installed as the README says but offline (the shipped recipes are a subpackage);
# where that fails, from the checkout on the path
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . \
    || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
run() {  # run NAME COMMAND...: the command's output on the console and in $out/NAME.log
    local name=$1
    shift
    echo "== $*" | tee "$out/$name.log"
    "$@" 2>&1 | tee -a "$out/$name.log"
}
part() {  # part NAME SECONDS COMMAND...: the command, stopped after SECONDS (SIGTERM, then SIGKILL 5 s later); its
    # output on the console and in $out/issue30.log (the device tool brings back 8 files at most)
    local name=$1 seconds=$2 start=$SECONDS
    shift 2
    echo "== $name: $*" | tee -a "$out/issue30.log"
    timeout -k 5 "$seconds" "$@" 2>&1 | tee -a "$out/issue30.log"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s (limit $seconds s)" | tee -a "$out/issue30.log"
}
one_micro_step() {  # --total_batch_size of one micro-step per optimizer step at the recipe's micro-batch, one GPU
    python3 -c "import json; r = json.load(open('recipes/$1.json')); print(r['device_batch_size'] * r['max_seq_len'])"
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
    issue30)
        bench=(python3 bench/throughput.py)
        part tests 85 python3 -m pytest -q -s -p no:cacheprovider tests/test_gpu.py -k "not sigterm" \
            tests/test_host_syncs.py::test_no_synchronizing_cuda_call_from_step_begin_to_step_end
        part throughput_d24 100 "${bench[@]}" recipes/d24.json --steps 7 --warmup 2 --reference loop \
            --total_batch_size="$(one_micro_step d24)"
        part throughput_d36 55 "${bench[@]}" recipes/d36.json --steps 5 --warmup 2 --total_batch_size="$(one_micro_step d36)"
        part throughput_d48 60 "${bench[@]}" recipes/d48.json --steps 5 --warmup 2 --total_batch_size="$(one_micro_step d48)"
        part fsdp2_d24 50 python3 -m accelerate.commands.launch --config_file accelerate_fsdp2.yaml --num_processes 1 \
            bench/throughput.py recipes/d24.json --steps 5 --warmup 2 --total_batch_size="$(one_micro_step d24)"
        part step_d24_2026 35 "${bench[@]}" recipes/d24-2026.json --steps 3 --warmup 1 --torch_compile=false \
            --total_batch_size="$(one_micro_step d24-2026)"
        part sigterm 45 python3 -m pytest -q -s -p no:cacheprovider tests/test_gpu.py -k sigterm
        part throughput_d16 40 "${bench[@]}" recipes/d16.json --steps 7 --warmup 2 --reference loop \
            --total_batch_size="$(one_micro_step d16)" ;;
    *) echo "usage: bash bench/gpu_suite.sh tests|d16|d24|d36|d48|nanochat|issue30" >&2; exit 2 ;;
esac
