"""Fine-tune on a chat dataset: `accelerate launch [--config_file accelerate_config.yaml] recipes/sft.py RUN
--data=QA [--recipe=sft-lora] [--key=value ...]` (`hansard-hf sft` is the same without accelerate)."""

import sys

from hansard_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["sft", *sys.argv[1:]]))
