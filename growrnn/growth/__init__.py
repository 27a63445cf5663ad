"""Growth: recurrent layers whose unit count is learned (Miconi 2016). Unit surgery is here; the
structure signals, the controller rule and the Lightning callback come with issue [C]."""

from growrnn.growth.surgery import UnitMap, remap_parameter, remap_state, resize_readers, resize_units

__all__ = ["UnitMap", "remap_parameter", "remap_state", "resize_readers", "resize_units"]
