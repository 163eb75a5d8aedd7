"""CORE's centred accuracy as an `evaluate` metric: evaluate.load(hansard_hf.evaluation.metrics.CENTERED_ACCURACY)."""

import datasets
import evaluate

from hansard_hf.evaluation.core_benchmark import centered

_DESCRIPTION = """Accuracy centred on the random baseline, (acc - b) / (1 - b), as the DCLM/nanochat CORE metric
scores each task (CORE is the mean over tasks)."""
_KWARGS = """
Args:
    predictions: predicted option index (multiple choice / schema) or 1/0 for an exact greedy match (language modelling).
    references: gold option index (or 1 for language modelling).
    random_baseline: the task's chance accuracy as a fraction (e.g. 0.25 for four options).
Returns:
    accuracy, centered_accuracy.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class CenteredAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, random_baseline=0.0):
        accuracy = sum(p == r for p, r in zip(predictions, references)) / len(references)
        return {"accuracy": accuracy, "centered_accuracy": centered(accuracy, random_baseline)}
