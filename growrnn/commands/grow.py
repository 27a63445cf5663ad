"""``growrnn grow seeds|plot``: run one growth config over many seeds, and draw the median and
interquartile range of units and loss against steps.

``growrnn grow seeds --config C --seeds 0-4 --jobs 2 --out DIR`` writes one config per seed
(``DIR/configs/seed<s>.yaml``: the seed set in ``seed_everything``, ``model.seed``, the data's
``seed`` option and every callback's ``seed``; TensorBoard into ``DIR/tb/seed<s>``), runs them as
``growrnn fit`` subprocesses (one torch thread each, ``--jobs`` at a time on the process-pool
executor), then draws ``DIR/growth.png`` and ``DIR/summary.csv``. On a rerun into the same ``DIR``
a seed whose run has finished (``tb/seed<s>/done.txt``, which records the config and arguments it
ran with) is skipped, and refused if it ran with another config; a seed that did not finish starts
again from an empty ``tb/seed<s>``.

``growrnn grow plot NAME=GLOB [NAME=GLOB ...] --out FILE.png`` draws groups of finished runs
(TensorBoard run folders) on one figure, e.g. a grown network against fixed sizes.
"""

from __future__ import annotations

import argparse
import csv
import glob
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from growrnn.errors import ArgumentError
from growrnn.files import config_file, output_folder

__all__ = ["main", "seed_config", "load_curves", "summarise", "plot_groups"]

log = logging.getLogger(__name__)
DONE = "done.txt"


def _seeds(text: str) -> list[int]:
    """Seeds from ``0-4`` (a range, both ends included) and ``0,3,7`` (a list), or both mixed."""
    out: list[int] = []
    for part in text.split(","):
        a, dash, b = part.partition("-")
        try:
            first, last = int(a), int(b) if dash else int(a)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seeds like 0-4 or 0,3,7; received {text!r}") from None
        if last < first:
            raise argparse.ArgumentTypeError(f"the range {part!r} ends before it starts: write it as {last}-{first}")
        out += range(first, last + 1)
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"a seed is given twice in {text!r}")
    return out


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI like 8,20; received {text!r}") from None
    return lo, hi


def _takes_seed(task: str | None) -> bool:
    """Whether the task has a ``seed`` option (generated and shuffled data do; PTB does not)."""
    if not task:
        return False
    import inspect

    from growrnn.task import task_factory
    return "seed" in inspect.signature(task_factory(task)).parameters


def seed_config(config: dict[str, Any], seed: int, tb_dir: Path) -> dict[str, Any]:
    """A copy of a ``growrnn fit`` config with every seed set to ``seed`` and TensorBoard logging
    into ``tb_dir``."""
    c = yaml.safe_load(yaml.safe_dump(config))
    c["seed_everything"] = seed
    c.setdefault("model", {})["seed"] = seed
    data = c.setdefault("data", {})
    if _takes_seed(data.get("task")) and (isinstance(data.get("options"), dict) or data.get("options") is None):
        data["options"] = {**(data.get("options") or {}), "seed": seed}
    trainer = c.setdefault("trainer", {})
    callbacks = trainer.get("callbacks")  # one callback may be given as a mapping, not a list
    for cb in [callbacks] if isinstance(callbacks, dict) else callbacks or []:
        if isinstance(cb, dict) and "class_path" in cb:
            args = cb.setdefault("init_args", {})
            if "seed" in args or cb["class_path"].endswith("StructureController"):
                args["seed"] = seed
    trainer["logger"] = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                         "init_args": {"save_dir": str(tb_dir.parent), "name": tb_dir.name, "version": ""}}
    trainer["enable_progress_bar"] = False
    return c


def fit_once(cmd: list[str], log_path: str, env: dict[str, str]) -> int:
    """Run one ``growrnn fit`` command line as a subprocess, its output into ``log_path``; returns
    its exit status (a job for the executor: a top-level function of plain data). The subprocess
    ends when the process that runs this does (:func:`~growrnn.executors.local.die_with_parent`):
    a ``growrnn grow seeds`` stopped by a signal leaves no seed training unseen."""
    from growrnn.executors import PARENT_ENV

    with open(log_path, "w") as logf:
        return subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT,
                               env={**env, PARENT_ENV: str(os.getpid())}).returncode


def _ran_with(seed_cfg: dict[str, Any], extra: Sequence[str]) -> dict[str, Any]:
    """What decides a seed's run, as ``done.txt`` records it: its config less the logger (which only
    names the folder, so a copied ``--out`` still matches) and the arguments passed on to ``growrnn fit``."""
    c = yaml.safe_load(yaml.safe_dump(seed_cfg))
    if isinstance(c.get("trainer"), dict):
        c["trainer"].pop("logger", None)
    return {"config": c, "arguments": list(extra)}


def _recorded(tb: Path, config_path: Path) -> dict[str, Any] | None:
    """What a finished seed ran with: its ``done.txt``; for one of an older growrnn (``ok``), its
    ``configs/seed<s>.yaml`` with the arguments unknown (``None``); ``None`` where neither says."""
    try:
        record = yaml.safe_load((tb / DONE).read_text())
    except yaml.YAMLError:
        record = None
    if isinstance(record, dict) and isinstance(record.get("config"), dict):
        return record
    if config_path.is_file():
        return {**_ran_with(yaml.safe_load(config_path.read_text()) or {}, ()), "arguments": None}
    return None


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists as dotted keys (``trainer.callbacks.0.init_args.max_units``)."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}{i}.").items()}
    return {prefix[:-1]: value}


def _differences(stored: dict[str, Any], now: dict[str, Any]) -> str:
    """The keys where a finished seed's record and this run's differ, with both values."""
    missing = object()
    old, new = _flat(stored["config"]), _flat(now["config"])

    def show(values: dict[str, Any], key: str) -> str:
        return "(missing)" if values.get(key, missing) is missing else repr(values[key])

    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, missing) != new.get(k, missing))
    out = [f"{k} {show(old, k)}, now {show(new, k)}" for k in keys]
    if stored.get("arguments") is not None and stored["arguments"] != now["arguments"]:
        out.append(f"arguments {stored['arguments']!r}, now {now['arguments']!r}")
    return "; ".join(out)


def run_seeds(config_path: Path, seeds: Sequence[int], out: Path, jobs: int, extra: Sequence[str]) -> list[Path]:
    """Run the config once per seed, ``jobs`` at a time on a :class:`~growrnn.executors.LocalExecutor`;
    returns the TensorBoard folders. A finished seed is skipped (an :class:`ArgumentError` if it ran
    with another config or other arguments); a seed that did not finish starts again from an empty
    folder, so its curves are those of one run."""
    from growrnn.executors import Job, LocalExecutor

    config = yaml.safe_load(config_path.read_text())
    output_folder(out, "--out")  # a clear error where --out is a file
    (out / "configs").mkdir(exist_ok=True)
    runs: list[Path] = []
    train: list[tuple[int, Path, dict[str, Any]]] = []
    finished: list[int] = []
    stale: dict[str, list[int]] = {}  # the differences -> the finished seeds that ran so
    for s in seeds:
        tb = out / "tb" / f"seed{s}"
        c = seed_config(config, s, tb)
        runs.append(tb)
        if not (tb / DONE).exists():
            train.append((s, tb, c))
            continue
        finished.append(s)
        record = _recorded(tb, out / "configs" / f"seed{s}.yaml")
        if record is None:
            log.warning("seed %d: %s says it finished but not with which config; kept unchecked", s, tb / DONE)
        elif differ := _differences(record, _ran_with(c, extra)):
            stale.setdefault(differ, []).append(s)
    if stale:
        received = "; and ".join(f"{'seed' if len(ss) == 1 else 'seeds'} {', '.join(map(str, ss))} finished with "
                                 f"{differ}" for differ, ss in stale.items())
        first = out / "tb" / f"seed{next(iter(stale.values()))[0]}"
        raise ArgumentError("--out", allowed="a new folder, or the config and arguments that made the finished "
                            "seeds in it", received=f"in {out}, {received}",
                            hint=f"use a new --out folder for this config, or delete a seed's folder (e.g. {first}) "
                            "to redo that seed with it")
    if finished:
        log.info("seeds %s finished already (%s in %s); not rerun", finished, DONE, out / "tb")
    todo, folders = [], {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for s, tb, c in train:
        path = out / "configs" / f"seed{s}.yaml"  # written only for a seed that trains: it is that run's config
        path.write_text(yaml.safe_dump(c, sort_keys=False))
        if tb.is_dir():  # an attempt that did not finish: its event files would mix into this run's curves
            log.info("seed %d: starting again from an empty %s", s, tb)
            shutil.rmtree(tb)
        tb.mkdir(parents=True)
        cmd = [sys.executable, "-m", "growrnn.cli", "fit", "--config", str(path), *extra]
        log.info("seed %d: %s", s, " ".join(cmd))
        todo.append(Job(f"seed{s}", fit_once, (cmd, str(tb.parent / f"seed{s}.log"), env)))
        folders[f"seed{s}"] = (s, tb, _ran_with(c, extra))
    failed = []
    # each job waits on its own subprocess, so a worker needs no torch; one job at a time runs inline
    with LocalExecutor(workers=jobs if jobs > 1 else 0, threads_per_worker=1, preload=()) as executor:
        for outcome in executor.run(todo):
            s, tb, record = folders[outcome.key]
            if outcome.ok and outcome.value == 0:
                (tb / DONE).write_text("# growrnn grow seeds: this seed finished; what it ran with\n"
                                       + yaml.safe_dump(record, sort_keys=False))
            else:
                failed.append(s)
    if failed:
        log.error("seeds %s failed; see %s", failed, out / "tb")
    return runs


def load_curves(run: Path) -> dict[str, np.ndarray]:
    """``steps`` and per-layer ``units`` (one point per logged step) and ``loss`` (train loss at
    its logged steps) of one TensorBoard run folder. A run with paired trials logs the units each
    layer holds too (``structure/held``): those are its units, not the network's width with a
    running trial's units on probation, which would draw every trial as a spike.

    Each curve holds one point per step, by step: where the folder holds the event files of more
    than one run (an attempt that wrote into it before), the latest written (by wall time)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    out: dict[str, np.ndarray] = {}
    layers = sorted(t for t in tags if t.startswith("structure/units/layer"))
    for t in layers:
        layer = t.rsplit("/", 1)[-1]
        held = f"structure/held/{layer}"
        out[layer] = _series(acc.Scalars(held if held in tags else t))
    if "train/loss" in tags:
        out["loss"] = _series(acc.Scalars("train/loss"))
    if not out:
        raise ArgumentError("run", allowed="a TensorBoard folder with structure/units/* or train/loss",
                            received=str(run))
    return out


def _series(events: Sequence[Any]) -> np.ndarray:
    """``[step, value]`` rows of TensorBoard scalar events, one per step (the latest by wall time),
    sorted by step."""
    latest: dict[int, tuple[float, float]] = {}
    for e in events:
        if e.step not in latest or e.wall_time >= latest[e.step][0]:
            latest[e.step] = (e.wall_time, e.value)
    return np.array([[step, latest[step][1]] for step in sorted(latest)])


def _on_grid(series: np.ndarray, grid: np.ndarray, smooth: int = 1) -> np.ndarray:
    values = series[:, 1]
    if smooth > 1:  # trailing mean over `smooth` logged points, like the paper's smoothed loss
        kernel = np.ones(smooth) / smooth
        values = np.convolve(np.pad(values, (smooth - 1, 0), mode="edge"), kernel, mode="valid")
    idx = np.searchsorted(series[:, 0], grid, side="right") - 1
    return np.where(idx >= 0, values[np.clip(idx, 0, None)], np.nan)


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def summarise(runs: Sequence[Path], points: int = 200, smooth: int = 50) -> dict[str, Any]:
    """Median and quartiles over runs of each curve on a common step grid.

    The grid ends at the last step logged; a curve that ends before holds its last value there (the
    train loss, logged at steps 0..N-1 while the units are logged at 1..N, and every curve of a run
    that ended early), so the grid's last point, which the summary's ``_end`` columns read, is each
    run's last units (a paired trial decided at the last step included) and last smoothed loss."""
    curves = [load_curves(r) for r in runs]
    first = max(int(c[k][0, 0]) for c in curves for k in c)
    last = max(int(c[k][-1, 0]) for c in curves for k in c)
    grid = np.linspace(first, max(first, last), points)
    out: dict[str, Any] = {"steps": grid, "runs": len(runs)}
    for key in curves[0]:
        stack = np.stack([_on_grid(c[key], grid, smooth if key == "loss" else 1) for c in curves if key in c])
        out[key] = np.nanpercentile(stack, [25, 50, 75], axis=0)
    return out


def plot_groups(groups: dict[str, Sequence[Path]], out: Path, title: str = "",
                loss_range: tuple[float, float] | None = None) -> dict[str, dict[str, Any]]:
    """Units (every layer) and smoothed train loss against steps: median line, interquartile band,
    one colour per group. Returns the summaries."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_u, ax_l) = plt.subplots(1, 2, figsize=(11, 4))
    sums = {}
    for i, (name, runs) in enumerate(groups.items()):
        s = summarise(runs)
        sums[name] = s
        colour = f"C{i}"
        for key in sorted(k for k in s if k.startswith("layer")):
            q = s[key]
            label = f"{name} ({_runs(s['runs'])})" + (f" {key}" if key != "layer0" else "")
            ax_u.plot(s["steps"], q[1], color=colour, label=label)
            ax_u.fill_between(s["steps"], q[0], q[2], color=colour, alpha=0.25)
        if "loss" in s:
            ax_l.plot(s["steps"], s["loss"][1], color=colour, label=f"{name} ({_runs(s['runs'])})")
            ax_l.fill_between(s["steps"], s["loss"][0], s["loss"][2], color=colour, alpha=0.25)
    ax_u.set(xlabel="step", ylabel="units", title="units (median, interquartile band)")
    ax_l.set(xlabel="step", ylabel="train loss (smoothed)", title="loss (median, interquartile band)")
    if loss_range:
        ax_l.set_ylim(*loss_range)
    for ax in (ax_u, ax_l):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return sums


def write_summary(sums: dict[str, dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["group", "runs", "curve", "q25_end", "median_end", "q75_end"])
        for name, s in sums.items():
            for key in sorted(k for k in s if k not in ("steps", "runs")):
                q = s[key][:, -1]
                w.writerow([name, s["runs"], key, *(f"{v:.4g}" for v in q)])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="growrnn grow", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    seeds = sub.add_parser("seeds", help="run a config over seeds, then plot")
    seeds.add_argument("--config", type=Path, required=True)
    seeds.add_argument("--seeds", type=_seeds, default=_seeds("0-4"), help="e.g. 0-4 or 0,3,7 (default 0-4)")
    seeds.add_argument("--jobs", type=int, default=1, help="runs at a time (one torch thread each)")
    seeds.add_argument("--out", type=Path, required=True)
    plot = sub.add_parser("plot", help="plot groups of finished runs")
    plot.add_argument("groups", nargs="+", metavar="NAME=GLOB", help="a label and a glob of TensorBoard run folders")
    plot.add_argument("--out", type=Path, required=True)
    plot.add_argument("--title", default="")
    plot.add_argument("--loss-range", type=_range, help="y range of the loss panel, e.g. 8,20")
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    if args.action == "seeds":
        config_file(args.config)
        runs = run_seeds(args.config, args.seeds, args.out, max(1, args.jobs), extra)
        done = [r for r in runs if (r / DONE).exists()]
        if not done:
            log.error("no seed finished, so there is nothing to plot; see %s", args.out / "tb" / "seed*.log")
            return 1
        sums = plot_groups({args.config.stem: done}, args.out / "growth.png", title=args.config.stem)
        write_summary(sums, args.out / "summary.csv")
        print(args.out / "growth.png")
        return 0 if len(done) == len(runs) else 1
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    groups: dict[str, Sequence[Path]] = {}
    for item in args.groups:
        name, sep, pattern = item.partition("=")
        paths = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_dir())
        if not sep or not paths:
            raise ArgumentError("NAME=GLOB", allowed="a label, '=', and a glob matching at least one run folder",
                                received=item, hint="quote the glob so the shell leaves it alone, e.g. "
                                "'lstm=runs/grow_lstm/tb/seed*' (the folders growrnn grow seeds wrote)")
        groups[name] = paths
    out = args.out if args.out.suffix else args.out.with_suffix(".png")  # what matplotlib would write
    sums = plot_groups(groups, out, args.title, args.loss_range)
    write_summary(sums, out.with_suffix(".csv"))
    print(out)
    return 0
