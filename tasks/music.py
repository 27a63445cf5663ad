"""Polyphonic music (Boulanger-Lewandowski et al. 2012): 88-key piano rolls; predict frame t+1
from frames up to t. Metric: negative log-likelihood per frame — the Bernoulli NLL summed over
the 88 keys, averaged over every predicted frame of the split (the literature's unit)."""

from __future__ import annotations

import torch

from growrnn.task import TaskSpec
from tasks.base import SequenceData, SimpleTask
from tasks.data import DataError, require

__all__ = ["jsb", "nottingham", "piano_midi", "musedata", "load_rolls"]

_FILES = {"jsb": "JSB_Chorales.mat", "nottingham": "Nottingham.mat", "piano_midi": "Piano_midi.mat",
          "musedata": "MuseData.mat"}


def load_rolls(name: str) -> dict[str, list[torch.Tensor]]:
    """Split -> list of (T, 88) float piano rolls."""
    import scipy.io
    path = require(name)[_FILES[name]]
    try:
        mat = scipy.io.loadmat(str(path))
    except (ValueError, OSError) as e:
        raise DataError(f"{path} does not read as a MATLAB file ({e}). HINT: re-download it") from None
    out = {}
    for split, key in (("train", "traindata"), ("valid", "validdata"), ("test", "testdata")):
        out[split] = [torch.as_tensor(roll.astype("float32")) for roll in mat[key][0]]
    return out


def _music(name: str, batch_size: int, seed: int) -> SimpleTask:
    require(name)

    def splits() -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
        return {k: [(r[:-1], r[1:]) for r in rolls if r.shape[0] > 1] for k, rolls in load_rolls(name).items()}

    spec = TaskSpec(name=name, input_kind="features", input_size=88, output_kind="multi_hot", output_size=88,
                    metric="nll_per_frame", direction="min",
                    description=f"{name} piano rolls: next frame (NLL per frame)")
    return SimpleTask(spec, lambda: SequenceData(splits, batch_size, per_step=True, seed=seed))


def jsb(batch_size: int = 16, seed: int = 0) -> SimpleTask:
    """JSB Chorales piano rolls, next frame. Metric: NLL per frame."""
    return _music("jsb", batch_size, seed)


def nottingham(batch_size: int = 16, seed: int = 0) -> SimpleTask:
    """Nottingham folk-tune piano rolls, next frame. Metric: NLL per frame."""
    return _music("nottingham", batch_size, seed)


def piano_midi(batch_size: int = 16, seed: int = 0) -> SimpleTask:
    """Piano-midi.de piano rolls, next frame. Metric: NLL per frame."""
    return _music("piano_midi", batch_size, seed)


def musedata(batch_size: int = 16, seed: int = 0) -> SimpleTask:
    """MuseData piano rolls, next frame. Metric: NLL per frame."""
    return _music("musedata", batch_size, seed)
