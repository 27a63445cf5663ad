"""Training-step time of a comparison's entries, measured apart (docs/reproductions/language.md).

A comparison's runs report their own step time, but runs that shared a machine with other jobs do
not compare with each other. This script builds every entry of a ``growrnn compare`` config as
its runs train it (the config's model options, the entry's layer size, ``match_params``
resolved) and times whole training steps (forward, cross-entropy, backward, gradient clip, SGD
step) on one batch of the task's -- for tasks scored per token, language models such as ``ptb``
-- the entries in turn round after round, on the calling thread's CPU time (one torch thread), so
the medians compare within one run even on a busy machine.
Prints a markdown table: ms a step and the ratio to the first entry. Example::

    python docs/reproductions/scripts/step_time.py configs/compare/ptb_evolved.yaml --rounds 40
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from growrnn.compare.config import load_config
from growrnn.compare.entries import resolve_entries
from growrnn.task import get_task
from growrnn.training.model import SequenceModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="a growrnn compare config")
    parser.add_argument("--rounds", type=int, default=40, help="timed steps per entry (median taken)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per entry first")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    task = get_task(config.task, **config.task_options)
    if task.spec.output_kind != "tokens":
        raise SystemExit(f"{args.config}: task {config.task!r} scores {task.spec.output_kind!r} outputs; this script "
                         "times token-level language models (cross-entropy per token), e.g. ptb")
    batch = next(iter(task.datamodule().train_dataloader()))
    x, y = batch["x"], batch["y"]
    clip = float(config.trainer.get("gradient_clip_val") or 0.0)
    steps = {}
    for entry in resolve_entries(config, Path(tempfile.mkdtemp())):
        torch.manual_seed(0)
        net = SequenceModel(task.spec, cell=entry.cell, seed=0, hidden_size=entry.hidden_size, **entry.model)
        opt = torch.optim.SGD(net.parameters(), lr=0.0)  # the step's arithmetic, weights unchanged

        def step(net: SequenceModel = net, opt: torch.optim.Optimizer = opt) -> None:
            logits, _ = net(x)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()

        for _ in range(args.warmup):
            step()
        steps[entry.name] = (step, sum(p.numel() for p in net.parameters()), entry.hidden_size)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, (step, _, _) in steps.items():
            start = time.thread_time()
            step()
            times[name].append(time.thread_time() - start)
    ref = statistics.median(next(iter(times.values())))
    print(f"{config.task}: batch {tuple(x.shape)}, {args.rounds} rounds, thread CPU time, 1 thread\n")
    print("| entry | units | parameters | ms/step | × first |\n|---|---:|---:|---:|---:|")
    for name, (_, params, size) in steps.items():
        median = statistics.median(times[name])
        print(f"| {name} | {size} | {params:,} | {1000 * median:.1f} | {median / ref:.2f} |")


if __name__ == "__main__":
    main()
