"""Bits per byte as an `evaluate` metric: evaluate.load(hansard_hf.evaluation.metrics.BITS_PER_BYTE)."""

import datasets
import evaluate

from hansard_hf.evaluation.bpb import bits_per_byte

_DESCRIPTION = """nanochat's bits per byte: summed next-token losses (nats) over summed target bytes, divided by ln 2.
Targets with 0 bytes (special tokens) are excluded from both sums."""
_KWARGS = """
Args:
    predictions: per-token loss in nats of each target token.
    references: byte length of each target token (token_bytes[target_id]).
Returns:
    bpb: bits per byte.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class BitsPerByte(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        nats = sum(loss for loss, nbytes in zip(predictions, references) if nbytes > 0)
        total = sum(references)
        return {"bpb": bits_per_byte(nats, total)}
