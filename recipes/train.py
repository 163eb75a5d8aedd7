"""Train a recipe: `accelerate launch [--config_file accelerate_config.yaml] recipes/train.py recipes/d24.json
[--key=value ...]` (or `hansard-hf train recipes/d24.json` without accelerate)."""

import sys

from hansard_hf.pipeline import run_recipe

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    run_recipe(sys.argv[1], sys.argv[2:])
