"""`evaluate` metric scripts: `evaluate.load(hansard_hf.evaluation.metrics.BITS_PER_BYTE)` and `CENTERED_ACCURACY`."""

from pathlib import Path

BITS_PER_BYTE = str(Path(__file__).with_name("bits_per_byte.py"))
CENTERED_ACCURACY = str(Path(__file__).with_name("centered_accuracy.py"))
