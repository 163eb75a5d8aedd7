"""How long the command line takes to answer, next to the imports it avoids: `hansard-hf --help` vs `python -c pass`,
`import torch`, `import transformers`'s Trainer and `accelerate --help`. Median of N runs, in seconds, and ratios.

    python bench/cli_startup.py [--runs 5]
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "hansard-hf --help": [str(BIN / "hansard-hf"), "--help"],
    "hansard-hf train --help": [str(BIN / "hansard-hf"), "train", "--help"],
    "import torch": [sys.executable, "-c", "import torch"],
    "from transformers import Trainer": [sys.executable, "-c", "from transformers import Trainer"],
    "accelerate --help": [str(BIN / "accelerate"), "--help"],
}


def seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    results = {name: seconds(command, runs) for name, command in COMMANDS.items()}
    help_time = results["hansard-hf --help"]
    print(f"| command | median s ({runs} runs) | ratio to hansard-hf --help |\n|---|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.2f} | {value / help_time:.2f} |")


if __name__ == "__main__":
    main()
