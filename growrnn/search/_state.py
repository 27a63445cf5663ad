"""Exact JSON round trips of RNG states, for the search's saved generations.

``random.Random.getstate()`` is a tuple (JSON has none) and numpy bit generators hold ``uint32``/
``uint64`` arrays and 128-bit ints; :func:`encode_state` turns such values into plain JSON values
with a tag, and :func:`decode_state` rebuilds them, so a restored generator continues exactly.

>>> import json, random
>>> rng = random.Random(1)
>>> copy = decode_state(json.loads(json.dumps(encode_state({"rng": rng}))))["rng"]
>>> copy.random() == rng.random()
True
"""

from __future__ import annotations

import base64
import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from growrnn.errors import ArgumentError

__all__ = ["decode_state", "encode_state"]

_TAGS = ("__random__", "__numpy_generator__", "__ndarray__", "__bytes__")


def encode_state(value: Any, _where: str = "state") -> Any:
    """``value`` as JSON values, exactly: ``random.Random`` and ``numpy.random.Generator`` objects
    (their full state), numpy arrays and scalars, ``bytes`` (e.g. a ``torch.Generator`` state as
    ``bytes(t.numpy())``), nested in dicts with str keys, lists and tuples (which become lists),
    and JSON scalars. Anything else is an :class:`ArgumentError` naming where it was."""
    if isinstance(value, random.Random):
        version, internal, gauss_next = value.getstate()
        return {"__random__": [version, list(internal), gauss_next]}
    if isinstance(value, np.random.Generator):
        return {"__numpy_generator__": encode_state(value.bit_generator.state, _where)}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [encode_state(v, f"{_where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k in _TAGS:
                raise ArgumentError(f"{_where} key", allowed=f"str keys other than {', '.join(_TAGS)}", received=k)
            out[k] = encode_state(v, f"{_where}[{k!r}]")
        return out
    raise ArgumentError(_where, allowed="random.Random, numpy Generator/array/scalar, bytes, dict, list, tuple, "
                        "str, int, float, bool, None", received=type(value).__name__,
                        hint="store a torch.Generator as bytes(gen.get_state().numpy())")


def decode_state(value: Any) -> Any:
    """Invert :func:`encode_state`: tagged dicts become new ``random.Random`` /
    ``numpy.random.Generator`` objects (same bit generator, same state), arrays and bytes."""
    if isinstance(value, list):
        return [decode_state(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__random__" in value:
        version, internal, gauss_next = value["__random__"]
        rng = random.Random()
        rng.setstate((version, tuple(internal), gauss_next))
        return rng
    if "__numpy_generator__" in value:
        state = decode_state(value["__numpy_generator__"])
        kind = getattr(np.random, str(state.get("bit_generator")), None)
        if not (isinstance(kind, type) and issubclass(kind, np.random.BitGenerator)):
            raise ArgumentError("state", allowed="a numpy bit generator name (PCG64, MT19937, ...)",
                                received=state.get("bit_generator"))
        bit_generator = kind()
        bit_generator.state = state
        return np.random.Generator(bit_generator)
    if "__ndarray__" in value:
        return np.array(value["__ndarray__"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
    if "__bytes__" in value:
        return base64.b64decode(value["__bytes__"])
    return {k: decode_state(v) for k, v in value.items()}
