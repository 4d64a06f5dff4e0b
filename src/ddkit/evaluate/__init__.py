"""Evaluation: fresh students under named, frozen presets; mean ± std over seeds."""

from ddkit.evaluate.presets import EvalPreset, load_eval_preset
from ddkit.evaluate.students import Summary, evaluate_set, read_summaries, train_student

__all__ = ["EvalPreset", "Summary", "evaluate_set", "load_eval_preset", "read_summaries", "train_student"]
