"""Growth: recurrent layers whose unit count is learned (Miconi 2016). Unit surgery, the
controller rule and the ``outgoing_l1`` signal are here; the ``multiplier`` signal and the
stateful Lightning callback come with issue [C]."""

from growrnn.growth.rule import GrowthRule, outgoing_l1, structure_step
from growrnn.growth.surgery import UnitMap, remap_parameter, remap_state, resize_readers, resize_units

__all__ = ["GrowthRule", "UnitMap", "outgoing_l1", "remap_parameter", "remap_state", "resize_readers",
           "resize_units", "structure_step"]
