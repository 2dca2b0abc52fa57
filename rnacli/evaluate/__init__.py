"""Evaluation: tasks, the native multiple-choice evaluator, the lm-eval backend, metrics."""
