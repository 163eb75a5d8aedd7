"""Forward+backward step time: HansardGPTForCausalLM vs transformers' NanoChatForCausalLM, same config and weights.

    python bench/cpu_step.py [--depth 4] [--seq 512] [--batch 4] [--vocab 8192] [--threads 2]

Both compute the soft-capped cross-entropy of a batch and backpropagate it (ours in chunks without full logits,
theirs on full fp32 logits). Prints the median step times and the ratio ours / native (target <= 1.0). For the
whole Trainer step against a plain loop see bench/trainer_step.py.
"""

import argparse

import torch
from torch.utils.benchmark import Timer
from transformers import NanoChatForCausalLM

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf.hub import to_nanochat_config


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-run-time", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = HansardGPTConfig(depth=args.depth, aspect_ratio=64, head_dim=64, vocab_size=args.vocab,
                              max_position_embeddings=args.seq)
    ours = HansardGPTForCausalLM(config).train()
    for p in ours.parameters():  # nanochat's zero projections would make both trivially cheap to differentiate
        torch.nn.init.normal_(p, std=0.02)
    native = NanoChatForCausalLM(to_nanochat_config(config)).train()
    native.load_state_dict(ours.state_dict())
    ids = torch.randint(0, args.vocab, (args.batch, args.seq))
    step = "model.zero_grad(set_to_none=True); model(input_ids=ids, labels=ids).loss.backward()"
    results = {}
    for _ in range(2):  # interleaved rounds, best median of each
        for name, model in (("HansardGPTForCausalLM", ours), ("NanoChatForCausalLM", native)):
            timer = Timer(step, globals={"model": model, "ids": ids}, num_threads=args.threads)
            median = timer.blocked_autorange(min_run_time=args.min_run_time).median
            results[name] = min(results.get(name, median), median)
    print(f"depth {args.depth}, width {config.hidden_size}, vocab {args.vocab}, {args.batch}x{args.seq} tokens, "
          f"{args.threads} threads")
    for name, seconds in results.items():
        print(f"{name:24s} {seconds * 1e3:9.1f} ms per fwd+bwd")
    print(f"ratio ours / native {results['HansardGPTForCausalLM'] / results['NanoChatForCausalLM']:.3f}")


if __name__ == "__main__":
    main()
