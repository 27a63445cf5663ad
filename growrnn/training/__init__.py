"""Training: the only Lightning code in growrnn — ``SequenceModel``, ``TaskData``, TensorBoard
callbacks and figures."""

from growrnn.training.callbacks import CellLogger
from growrnn.training.data import TaskData
from growrnn.training.model import SequenceModel

__all__ = ["SequenceModel", "TaskData", "CellLogger"]
