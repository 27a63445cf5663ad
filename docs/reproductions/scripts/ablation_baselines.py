"""A unit's worth with the zero, mean and regress baselines (docs/reproductions/settling.md).

Trains a fixed-size growable LSTM on JSB Chorales (the settling recipe's training, one thread),
then measures every unit's worth on 4 training batches twice: the loss rise when its outgoing
weights are zeroed (``zero``), and when they are zeroed but its mean output is added to the
biases of the decoder and of the recurrent product that read it (``mean``), and when its output is
replaced by its least-squares estimate from the other units' outputs (``regress``). Prints
quantiles, the sums and the share of units below ``--lam`` of the loss. Example::

    python docs/reproductions/scripts/ablation_baselines.py --units 128 --epochs 30
"""

import argparse
import itertools

import lightning as L
import torch

from growrnn.growth.signals import Ablation
from growrnn.training.cli import quiet_lightning
from growrnn.training.data import TaskData
from growrnn.training.model import SequenceModel

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--units", type=int, default=128)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--lam", type=float, default=1e-3, help="the bar, a fraction of the loss")
args = parser.parse_args()

torch.set_num_threads(1)
quiet_lightning()
L.seed_everything(args.seed, verbose=False)
data = TaskData("jsb", {"seed": args.seed, "batch_size": 8})
net = SequenceModel(data.spec, cell="lstm", hidden_size=[args.units], seed=args.seed, optimizer="adam", lr=1e-3,
                    dropout=0.2, schedule="plateau", plateau_factor=2.0, patience=5)
L.Trainer(max_epochs=args.epochs, enable_progress_bar=False, logger=False, enable_checkpointing=False,
          gradient_clip_val=1.0, num_sanity_val_steps=0, enable_model_summary=False).fit(net, datamodule=data)
data.setup("fit")
batches = list(itertools.islice(data.train_dataloader(), 4))
worth: dict[str, torch.Tensor] = {}
for baseline in ("zero", "mean", "regress"):
    total = torch.zeros(args.units)
    for batch in batches:
        signal = Ablation(lam=0.0, trial_steps=1, rate=float(args.units), check_every=1, baseline=baseline)
        signal.bar = lambda: -float("inf")  # type: ignore[method-assign]  # measure every unit, remove none
        signal.check(net.rnn, {})
        signal.after_step(net.rnn, net.decoder, None, None)
        signal.measure(net.rnn, net.decoder, lambda b=batch: net.batch_loss(b), step=0, mask=batch["mask"])
        total += signal.worth[0]
    worth[baseline] = total / len(batches)
base = sum(net.batch_loss(b) for b in batches) / len(batches)
for name, w in worth.items():
    q = torch.quantile(w, torch.tensor([0.1, 0.5, 0.9])).tolist()
    print(f"{name}: worth quantiles 10/50/90 % {q[0]:.4f} {q[1]:.4f} {q[2]:.4f}, sum {w.sum():.3f}, "
          f"below {args.lam:g} of the loss ({args.lam * base:.4f}): {(w < args.lam * base).float().mean():.0%}")
