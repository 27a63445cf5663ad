"""Evaluators: train a cell on a task for a budget and score it — shared by search and compare."""

from growrnn.evaluation.evaluate import Budget, Result, evaluate

__all__ = ["Budget", "Result", "evaluate"]
