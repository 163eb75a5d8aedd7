"""Train a recipe: `accelerate launch [--config_file accelerate_config.yaml] recipes/train.py d24 [--key=value ...]`
(a shipped recipe's name, a recipe JSON or a run folder; `hansard-hf train d24` is the same without accelerate)."""

import sys

from hansard_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
