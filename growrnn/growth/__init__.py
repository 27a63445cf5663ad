"""Growth: recurrent layers whose unit count is learned (Miconi 2016).

Unit surgery (:mod:`~growrnn.growth.surgery`), the growable stack with per-layer sizes and unit
multipliers (:mod:`~growrnn.growth.stack`), and the controller rule with the ``outgoing_l1``
score (:mod:`~growrnn.growth.rule`), the need rule, and the structure signals with their per-step
weight updates (:mod:`~growrnn.growth.signals`: Miconi's ``outgoing_l1`` and ``multiplier``, the
settling ``group_lasso`` and ``l0_gate``). The Lightning callback that applies them while training is
:class:`growrnn.training.growth.StructureController`.
"""

from growrnn.growth.rule import GrowthRule, NeedRule, need_step, outgoing_l1, reader_scales, structure_step
from growrnn.growth.stack import (
    GrowableRNN,
    fold_gates,
    fold_unit_scales,
    layers_of,
    outgoing_weights,
    resize_layer,
    resize_to,
)
from growrnn.growth.surgery import UnitMap, remap_parameter, remap_state, resize_readers, resize_units

__all__ = ["GrowableRNN", "GrowthRule", "NeedRule", "UnitMap", "fold_gates", "fold_unit_scales", "layers_of",
           "need_step", "outgoing_l1", "outgoing_weights", "reader_scales", "remap_parameter", "remap_state",
           "resize_layer", "resize_readers", "resize_to", "resize_units", "structure_step"]
