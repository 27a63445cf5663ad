"""The StructureController grows and shrinks a layer during Lightning training."""

from pathlib import Path

import lightning as L
import torch

import tasks
from growrnn.training import SequenceModel
from growrnn.training.growth import StructureController


def _fit(tmp_path: Path, controller: StructureController, steps: int, start: int = 2) -> SequenceModel:
    t = tasks.get("miconi_hard", train_windows=steps, eval_windows=2)
    model = SequenceModel(t.spec, cell="elman", hidden_size=start, one_hot=True, optimizer="rmsprop", lr=0.01,
                          loss_sum_over_time=True, max_update=0.01, l1=1e-4, init_range=0.017)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[controller], default_root_dir=str(tmp_path),
                        limit_val_batches=0)
    trainer.fit(model, t.datamodule())
    return model


def test_units_are_added_when_none_is_spare(tmp_path: Path) -> None:
    grow = StructureController(p_add=1.0, p_spontaneous=0.0, threshold=1e-9, max_units=6, seed=1)
    model = _fit(tmp_path, grow, steps=20)
    assert model.rnn.hidden_size == 5 and grow.added == 3   # capped at max_units - 1, as the paper's code
    assert model.decoder.weight.shape == (4, 5) and model.rnn.weight_hh_l0.shape == (5, 5)


def test_sub_threshold_units_are_deleted(tmp_path: Path) -> None:
    shrink = StructureController(threshold=1e9, reserve=1, p_delete=1.0, p_add=0.0, p_spontaneous=0.0, seed=0)
    model = _fit(tmp_path, shrink, steps=5, start=6)
    assert model.rnn.hidden_size == 1 and shrink.deleted == 5


def test_the_controller_state_round_trips() -> None:
    a = StructureController(seed=3)
    a.rng.random()
    torch.randn(2, generator=a.gen)
    b = StructureController(seed=99)
    b.load_state_dict(a.state_dict())
    assert a.rng.random() == b.rng.random()
    assert torch.equal(torch.randn(3, generator=a.gen), torch.randn(3, generator=b.gen))
