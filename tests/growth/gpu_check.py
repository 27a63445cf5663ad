"""GPU checks for the growth regime: run by hand on a machine with CUDA (CI never needs a GPU).

    python tests/growth/gpu_check.py            # a few minutes on one GPU
    python tests/growth/gpu_check.py --dry-run  # the same checks with the CPU standing in for CUDA

1. Surgery on CUDA equals surgery on the CPU: a two-layer LSTM stack under Adam gets units added
   and deleted on both devices (float64); outputs, carried states and the optimizer's moments
   agree to 1e-10, and everything stays on the device.
2. A layer grown on CUDA by the ``paired`` signal (Lightning, ``accelerator="gpu"``): its
   parameters and optimizer state are on the device after every trial, and its checkpoint loads
   on the CPU (``map_location="cpu"``) with the same outputs.
3. Exact mid-run resume on CUDA with deterministic algorithms, for each settling signal (the
   unit tests' 60-step runs, resumed at step 30, compared row by row).
4. Growth in mixed precision on CUDA (``16-mixed``, with its gradient scaler, and ``bf16-mixed``)
   for an LSTM (cuDNN), a GRU and an evolved cell (the generic path): a short ``paired`` run
   changes the width and ends with a finite validation loss below the untrained network's.
5. A layer grown on CUDA converts to the ``nn.LSTM`` it computes (``to_torch``), on the device,
   with the same outputs.

Exit status 0 when every check passes. The test suite itself also runs on a GPU machine: its
Lightning trainers take the GPU when one is there (``accelerator="auto"``).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts: deterministic cuBLAS

import lightning as L  # noqa: E402
import torch  # noqa: E402

from growrnn.growth import GrowableRNN, resize_layer  # noqa: E402
from growrnn.growth.surgery import UnitMap  # noqa: E402
from growrnn.training import SequenceModel, TaskData  # noqa: E402
from growrnn.training.growth import StructureController  # noqa: E402

FAILED: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name} {detail}", flush=True)
    if not ok:
        FAILED.append(name)


def _devices(tensors: list[torch.Tensor]) -> set[str]:
    return {t.device.type for t in tensors}


def surgery_matches_cpu(gpu: str) -> None:
    results = {}
    for device in ("cpu", gpu):
        torch.manual_seed(0)
        rnn = GrowableRNN("lstm", 6, [5, 4], dtype=torch.float64).to(device)
        head = torch.nn.Linear(4, 3, dtype=torch.float64).to(device)
        opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=0.01)
        x = torch.randn(7, 2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(device)
        out, state = rnn(x)
        head(out).square().sum().backward()
        opt.step()
        gen = torch.Generator().manual_seed(2)  # fresh rows drawn on the CPU's generator, whatever the device
        state = resize_layer(rnn, head, 0, UnitMap.of(5, [0, 2, 3, 4], add=2), opt, gen, 0.1, state=state)
        state = resize_layer(rnn, head, 1, UnitMap.of(4, [1, 3], add=1), opt, gen, 0.1, state=state)
        out, state = rnn(x, state)
        moments = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0]
        results[device] = (out, state, moments, _devices([*rnn.parameters(), *head.parameters(), *moments]))
    (o1, s1, m1, _), (o2, s2, m2, where) = results["cpu"], results[gpu]
    flat = lambda s: [t for layer in s for t in (layer if isinstance(layer, tuple) else (layer,))]  # noqa: E731
    err = max([(o1 - o2.cpu()).abs().max().item()] + [(a - b.cpu()).abs().max().item()
                                                       for a, b in zip(flat(s1) + m1, flat(s2) + m2, strict=True)])
    check("surgery on CUDA equals the CPU's (outputs, states, Adam moments)", err <= 1e-10, f"(max abs diff {err:.2e})")
    check("surgery keeps every tensor on CUDA", where == {gpu}, f"({sorted(where)})")


class _Where(L.Callback):
    """The devices of the parameters and optimizer state after every step, and the widths seen."""

    def __init__(self) -> None:
        self.devices: set[str] = set()
        self.widths: set[tuple[int, ...]] = set()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: SequenceModel, *args: object) -> None:
        opt = trainer.optimizers[0]
        state = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0]
        self.devices |= _devices([*pl_module.parameters(), *state])
        self.widths.add(tuple(pl_module.hidden_sizes()))


def grown_on_cuda_loads_on_cpu(tmp: Path, gpu: str) -> None:
    data = TaskData("teacher", {"units": 16, "seed": 0})
    model = SequenceModel(data.spec, cell="lstm", hidden_size=[4], optimizer="adam", lr=0.003, seed=0)
    where = _Where()
    controller = StructureController(signal="paired", paired_steps=20, max_units=64, seed=0)
    trainer = L.Trainer(accelerator="gpu" if gpu == "cuda" else "cpu", devices=1, max_epochs=3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[controller, where], default_root_dir=str(tmp))
    trainer.fit(model, data)
    check("a paired run on CUDA changed the width", len(where.widths) > 1, f"(widths seen {sorted(where.widths)})")
    check("parameters and optimizer state stay on CUDA through the trials", where.devices == {gpu},
          f"({sorted(where.devices)})")
    trainer.save_checkpoint(tmp / "grown.ckpt", weights_only=False)
    loaded = SequenceModel.load_from_checkpoint(tmp / "grown.ckpt", map_location="cpu")
    model.to(gpu).eval(), loaded.eval()  # Lightning hands the model back on the CPU after fit
    x = next(iter(data.val_dataloader()))["x"][:4]
    torch.backends.cudnn.allow_tf32 = False  # cuDNN's recurrent kernels round float32 to TF32 by default
    err = (loaded(x)[0] - model(x.to(gpu))[0].cpu()).abs().max().item()
    check("its checkpoint loads on the CPU with the same outputs",
          loaded.hidden_sizes() == model.hidden_sizes() and err <= 1e-4,
          f"(widths {loaded.hidden_sizes()}, max abs diff {err:.2e})")
    lstm = model.rnn.to_torch()
    h = model.encoder(x.to(gpu))
    err = (lstm(h)[0] - model.rnn(h)[0]).abs().max().item()
    check("the grown layer converts to nn.LSTM on CUDA with the same outputs",
          next(lstm.parameters()).device.type == gpu and lstm.hidden_size == model.hidden_sizes()[0] and err <= 1e-5,
          f"(max abs diff {err:.2e})")


def grows_in_mixed_precision_on_cuda(tmp: Path, gpu: str) -> None:
    for precision in ("16-mixed", "bf16-mixed"):
        for cell in ("lstm", "gru", "configs/cells/jsb/cell_199.txt"):
            data = TaskData("teacher", {"units": 16, "seed": 0})
            model = SequenceModel(data.spec, cell=cell, hidden_size=[4], optimizer="adam", lr=0.003, seed=0)
            where = _Where()
            controller = StructureController(signal="paired", paired_steps=20, max_units=64, seed=0)
            trainer = L.Trainer(accelerator="gpu" if gpu == "cuda" else "cpu", devices=1, max_epochs=3, logger=False,
                                precision=precision, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, callbacks=[controller, where], default_root_dir=str(tmp))
            untrained = trainer.validate(model, data, verbose=False)[0]["val/loss"]
            trainer.fit(model, data)
            loss = trainer.validate(model, data, verbose=False)[0]["val/loss"]
            name = Path(cell).stem
            check(f"{name} grows under {precision} on CUDA", len(where.widths) > 1 and math.isfinite(loss)
                  and loss < untrained,
                  f"(widths {sorted(where.widths)[:3]}..., val/loss {untrained:.3f} -> {loss:.3f})")


def resume_is_exact_on_cuda(tmp: Path) -> None:
    """The unit tests' resume runs: their trainers take the GPU where there is one."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for ``tests``
    from tests.training.test_growth import _resumed_rows
    torch.use_deterministic_algorithms(True)
    try:
        for start, cell, signal in (([3, 2], "lstm", "group_lasso"), ([3], "gru", "l0_gate"),
                                    ([2, 3], "gru", "ablation"), ([2, 3], "lstm", "paired")):
            whole, resumed, _ = _resumed_rows(tmp / f"{signal}", start, cell, signal, {}, at=30)
            check(f"{signal} ({cell}) resumed mid-run on CUDA continues exactly",
                  len(whole) == 60 and resumed == whole[30:] and len({tuple(r[2]) for r in whole}) > 2,
                  f"({len(whole)} steps, widths {sorted({tuple(r[2]) for r in whole})[:4]}...)")
    finally:
        torch.use_deterministic_algorithms(False)


def main(argv: list[str]) -> int:
    gpu = "cpu" if "--dry-run" in argv else "cuda"
    if gpu == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing checked (--dry-run runs the checks on the CPU)")
        return 2
    from growrnn.training.cli import quiet_lightning
    quiet_lightning()
    with tempfile.TemporaryDirectory() as tmp:
        surgery_matches_cpu(gpu)
        grown_on_cuda_loads_on_cpu(Path(tmp), gpu)
        resume_is_exact_on_cuda(Path(tmp))
        grows_in_mixed_precision_on_cuda(Path(tmp), gpu)
    print("FAILED: " + ", ".join(FAILED) if FAILED else "all growth GPU checks passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
