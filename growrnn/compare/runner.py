"""Running a comparison: every (entry, seed) through :func:`growrnn.evaluation.evaluate`, each
finished run stored at once as ``DIR/runs/<entry>/seed<k>.json``, so that an interrupted
comparison resumes where it stopped.

Layout of ``DIR``::

    runs/<entry>/seed<k>.json     one finished run: settings, Result, final units, train time
    runs/<entry>/tune<j>.json     with a tuning grid: setting j trained at the first seed
    runs/<entry>/seed<k>.parts/   while a run trains: progress.json and its last part's checkpoint
    tb/<entry>/seed<k>/           that run's TensorBoard events (tb/<entry>/tune<j>/ likewise)
    cells/<name>/                 the cells exported from a search archive (see resolve_entries)

**Resume.** A run whose JSON exists is not trained again; its stored ``settings`` (task, options,
model, trainer, budget, seed, cell, growth) must equal what the config asks now, else the
comparison stops with an error naming the file: mixing runs of two configs in one table would be
unfair, and silently retraining would throw results away. A run is written only when it has
finished, atomically, so a killed comparison leaves no half-written file. A run trains in parts
(``checkpoint_every``; by default one per epoch of an epoch budget) and keeps a Lightning
checkpoint of its last finished part in ``seed<k>.parts/``, so a killed comparison loses at most
a part of each run: the next call goes on from there, and the run reaches the result an
uninterrupted one would have (weights, optimizer, schedule, growth controller and the data's
order are in the checkpoint; the test suite checks the records are equal). A steps cap that
ends the run inside a part makes the last part go over that part again from its start, so the
run's end is scored as an uninterrupted run scores it. A run that starts from nothing has its
TensorBoard folder cleared first; one that goes on keeps it (the steps of a part cut short are
then logged twice). A finished run's leftover checkpoint (a kill between its record and its
cleanup) is removed when the comparison next finds the record.

**Tuning.** With a grid of more than one setting, each entry first trains every setting at the
first seed (``tune<j>``); the best on validation is then used for every seed. The first seed's
run with that setting *is* the winning tuning run (same seed, same setting), so it is adopted
(copied) rather than trained twice.

**Timing.** ``train_seconds`` sums the time between the start and end of each training batch
(forward, backward, optimizer step and the growth controller's surgery; not validation), and
``train_seconds / train_steps`` is the training time per step the tables report.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from growrnn.compare.config import CompareConfig, tuning_grid
from growrnn.compare.entries import ResolvedEntry, resolve_entries
from growrnn.errors import ArgumentError
from growrnn.files import output_folder, write_atomic

__all__ = ["Comparison", "run_comparison", "run_one", "run_parts", "run_settings"]

log = logging.getLogger(__name__)


@dataclass
class Comparison:
    """What :func:`run_comparison` did: the entries, each entry's finished seed records (the
    stored JSON dicts), and the runs that failed or are still to do (``"<entry>/<run>"``)."""

    out: Path
    entries: list[ResolvedEntry]
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # seed runs whose record is the best tuning run's, copied
    failed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Run:
    entry: ResolvedEntry
    seed: int
    setting: dict[str, Any]
    tag: str  # seed<k> or tune<j>

    @property
    def key(self) -> str:
        return f"{self.entry.name}/{self.tag}"


def run_settings(config: CompareConfig, entry: ResolvedEntry, seed: int, setting: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides one run's outcome, as JSON values (what a run file stores and a
    resume compares)."""
    model = {**entry.model, **setting, "hidden_size": entry.hidden_size}
    values = {"task": config.task, "task_options": config.task_options, "model": model, "trainer": config.trainer,
              "budget": config.budget.as_dict(), "seed": seed, "cell": entry.cell, "grow": entry.grow}
    return json.loads(json.dumps(values))  # tuples become lists, as they come back from a file


def run_parts(budget: dict[str, Any], every: dict[str, int] | None) -> list[dict[str, Any]]:
    """The budgets a run trains in, each counted from the run's start (each part goes on from the
    last one's checkpoint); the last is ``budget`` itself. ``every``: the config's
    ``checkpoint_every`` (``None``: a part per epoch of an epoch budget; ``{}``: one part).

    >>> run_parts({"epochs": 3, "val_every": 5}, None)
    [{'epochs': 1, 'val_every': 5}, {'epochs': 2, 'val_every': 5}, {'epochs': 3, 'val_every': 5}]
    >>> run_parts({"steps": 10}, {"steps": 4})
    [{'steps': 4}, {'steps': 8}, {'steps': 10}]
    """
    if every is None:
        every = {"epochs": 1} if "epochs" in budget and "seconds" not in budget else {}
    if not every:
        return [dict(budget)]
    (unit, k), = every.items()
    return [{**budget, unit: end} for end in [*range(k, budget[unit], k), budget[unit]]]


def run_one(payload: dict[str, Any]) -> dict[str, Any]:
    """Train one run (a top-level function of plain data, so the executor's workers can pickle
    it). ``payload``: ``settings`` (see :func:`run_settings`), ``tb`` (``[save_dir, name,
    version]`` of its TensorBoard folder), ``threads`` (torch threads while it runs), and
    optionally ``parts`` (:func:`run_parts`; default one) with ``progress``, the run's progress
    file: after each part but the last it records the part's checkpoint and the curves, steps
    and seconds so far, and a call that finds it (made with the same settings and parts) goes on
    from there. Checkpoints are read weights-only; the caller deletes the file and the
    checkpoint once the run's record is written.

    Returns ``{"result": Result.as_dict(), "hidden_sizes", "train_seconds", "train_steps"}``:
    ``curve``, ``train_seconds``, ``train_steps`` and ``wall_time`` cover every part."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from growrnn.evaluation import evaluate
    from growrnn.evaluation.config import joined_curve

    s = payload["settings"]
    parts = payload.get("parts") or [s["budget"]]
    if len(parts) > 1 and not payload.get("progress"):
        raise ValueError("a run in parts needs a progress file (payload['progress'])")
    progress_path = Path(payload.get("progress") or "progress.json")
    progress = _read_progress(progress_path if len(parts) > 1 else None, s, parts)
    save_dir, name, version = payload["tb"]
    if progress["done"] == 0:  # a run that starts from nothing logs from nothing
        shutil.rmtree(Path(save_dir) / name / version, ignore_errors=True)
    logger = TensorBoardLogger(save_dir, name=name, version=version, default_hp_metric=False)
    cap = s["budget"].get("steps")
    i = progress["done"]
    while True:
        last = i == len(parts) - 1
        resume = progress_path.with_name(progress["checkpoint"]) if progress["checkpoint"] else None
        target = None if last else progress_path.with_name(f"part{i}.ckpt")
        # each seed's growth draws its own numbers (evaluate seeds the controller with the run's seed)
        result = evaluate(s["cell"], s["task"], parts[i], int(s["seed"]), task_options=s["task_options"],
                          model=s["model"], trainer=s["trainer"], grow=s["grow"],
                          threads=int(payload.get("threads", 1)), logger=logger, resume_from=resume,
                          checkpoint_to=target, score=last)
        _count_part(progress, result, +1)
        if last or (result.diverged and target is not None and not target.is_file()):
            break  # the run's end; a diverged run ends where an uninterrupted one would (no checkpoint then)
        if not target.is_file():
            raise RuntimeError(f"part {i + 1} of {len(parts)} stopped at step {result.steps} before its budget "
                               f"{parts[i]} without diverging, so there is no checkpoint to go on from")
        if cap is not None and result.steps >= cap:
            # the steps cap came before this part's epochs: the run's end, which an unscored part cannot
            # be; the last part goes over it again from the same start (once a run), scoring its end
            _count_part(progress, result, -1)
            target.unlink(missing_ok=True)
            i = len(parts) - 1
            if resume is not None:
                _write_json(progress_path, {**progress, "done": i})
            progress["done"] = i
            continue
        i += 1
        _write_json(progress_path, {**progress, "done": i, "checkpoint": target.name})
        if resume is not None:
            resume.unlink(missing_ok=True)
        progress.update(done=i, checkpoint=target.name)
    curve = joined_curve(progress["curve"], s["budget"].get("val_every"))
    record = {**result.as_dict(), "curve": curve, "wall_time": progress["wall_time"],
              "train_seconds": progress["train_seconds"], "train_steps": progress["train_steps"]}
    return {"result": record, "hidden_sizes": result.hidden_sizes, "train_seconds": progress["train_seconds"],
            "train_steps": progress["train_steps"]}


def _count_part(progress: dict[str, Any], result: Any, sign: int) -> None:
    """Add a part's curve, steps and seconds to a run's ``progress`` (``sign`` -1: take the last
    part's back out)."""
    if sign > 0:
        progress["curve"].append(result.curve)  # one list per part, joined at the end
    else:
        progress["curve"].pop()
    for key in ("train_seconds", "train_steps", "wall_time"):
        progress[key] += sign * getattr(result, key)


def _read_progress(path: Path | None, settings: dict[str, Any], parts: list[dict[str, Any]], *,
                   quiet: bool = False) -> dict[str, Any]:
    """A run's progress file if it can be gone on from (same settings and parts, its checkpoint
    there), else a fresh start (said in the log unless ``quiet``)."""
    fresh = {"settings": settings, "parts": parts, "done": 0, "checkpoint": None, "curve": [], "train_seconds": 0.0,
             "train_steps": 0, "wall_time": 0.0}
    if path is None or not path.is_file():
        return fresh
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        if not quiet:
            log.warning("%s cannot be read (%s): the run starts over", path, err)
        return fresh
    usable = (isinstance(stored, dict) and set(stored) == set(fresh) and stored["settings"] == settings
              and stored["parts"] == parts and isinstance(stored["checkpoint"], str)
              and path.with_name(stored["checkpoint"]).is_file())
    if not usable:
        if not quiet:
            log.warning("%s was made with other settings or parts, or its checkpoint is gone: the run starts over",
                        path)
        return fresh
    if not quiet:
        log.info("%s: going on from its checkpoint after part %d of %d", path.parent, stored["done"], len(parts))
    return stored


# ------------------------------------------------------------------------------------------ files
def _write_json(path: Path, value: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(value, indent=1) + "\n")  # a reader sees the whole file or none


#: What a run's record must hold (the report reads them), and what its "result" must hold.
RECORD_KEYS = ("entry", "run", "setting", "settings", "result")
RESULT_KEYS = ("metric", "direction", "val", "test", "diverged", "params", "macs_per_step")


def _read_record(path: Path) -> dict[str, Any]:
    """A run's record file, checked; a damaged one (truncated, not an object, keys missing) is an
    error that names it and says how to redo that run."""
    def bad(what: str) -> ArgumentError:
        return ArgumentError("--out", allowed="a folder of run records that growrnn compare wrote",
                             received=f"{path}, which {what}",
                             hint=f"delete {path} (and its tb/ folder) to train that run again")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise bad(f"cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise bad(f"is not valid JSON ({err}; a truncated write?)") from None
    if not isinstance(record, dict):
        raise bad(f"holds a {type(record).__name__}, not a run record")
    missing = [k for k in RECORD_KEYS if k not in record]
    result = record.get("result")
    if not missing and isinstance(result, dict):
        missing = [f"result.{k}" for k in RESULT_KEYS if k not in result]
    elif not missing:
        missing = ["result (an object)"]
    if missing:
        raise bad(f"lacks {', '.join(missing)}")
    return record


def _read_finished(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The stored record of a finished run, or ``None``; an error if it was made with other settings."""
    if not path.is_file():
        return None
    record = _read_record(path)
    if record.get("settings") != settings:
        stored = record.get("settings") or {}
        keys = sorted(k for k in {*stored, *settings} if stored.get(k) != settings.get(k))
        differ = ", ".join(f"{k} ({_differences(stored.get(k), settings.get(k))})" for k in keys)
        raise ArgumentError("--out", allowed="a new folder, or the config that made the runs already in it",
                            received=f"{path} was made with other {differ}",
                            hint=f"use a new --out folder for this config, or delete {path} (and its tb/ "
                            "folder) to redo that run with it")
    return record


def _differences(stored: Any, now: Any) -> str:
    """What differs between a stored setting and the config's, briefly: ``steps 6, now 7`` for the
    keys of two mappings that differ, else ``6, now 7``."""
    if isinstance(stored, dict) and isinstance(now, dict):
        keys = sorted(k for k in {*stored, *now} if stored.get(k) != now.get(k))
        return "; ".join(f"{k} {stored.get(k)!r}, now {now.get(k)!r}" for k in keys)
    return f"{stored!r}, now {now!r}"


def _progress(out: Path, run: _Run) -> Path:
    """Where an unfinished run keeps its progress file and its last part's checkpoint."""
    return out / "runs" / run.entry.name / f"{run.tag}.parts" / "progress.json"


def _value(record: dict[str, Any], split: str) -> float:
    value = record["result"].get(split)
    return math.nan if value is None else float(value)


# ------------------------------------------------------------------------------------------ running
def run_comparison(config: CompareConfig, out: str | Path, *, dry_run: bool = False) -> Comparison:
    """Run (or resume) the comparison into ``out`` and return what is there; the report is written
    by :func:`growrnn.compare.report.write_report`. With ``dry_run`` nothing is trained: the log
    lists what would be."""
    from growrnn.executors import LocalExecutor

    out = Path(out) if dry_run else output_folder(out, "--out")  # a dry run makes nothing
    entries = resolve_entries(config, out)
    if not dry_run:
        import dataclasses
        _write_json(out / "config.json", dataclasses.asdict(config))  # what made these runs, for the record
    grid = tuning_grid(config.tuning)
    tuned = len(grid) > 1
    done = Comparison(out, entries)
    executor: list[Any] = []  # started on first need: spawning workers costs a torch import each

    def get_executor() -> Any:
        if not executor:
            executor.append(LocalExecutor(workers=config.workers, threads_per_worker=config.threads))
        return executor[0]

    try:
        chosen: dict[str, tuple[dict[str, Any], str | None]] = {}  # entry -> (setting, tune tag it came from)
        if tuned:
            log.info("tuning %s over %d settings per entry at seed %d", ", ".join(sorted(config.tuning)), len(grid),
                     config.seeds[0])
            runs = [_Run(e, config.seeds[0], s, f"tune{j}") for e in entries for j, s in enumerate(grid)]
            tuning = _execute(runs, config, out, get_executor, dry_run, done)
            for e in entries:
                found = [r for j in range(len(grid)) if (r := tuning.get(f"{e.name}/tune{j}")) is not None]
                if len(found) < len(grid):
                    # its seeds wait for the whole grid; the first will be the best tuning run, not trained
                    done.pending += [f"{e.name}/seed{s}" for s in config.seeds[1:]]
                    continue
                best = min(range(len(grid)), key=lambda j: _rank(found[j]))  # the first of equals
                chosen[e.name] = (grid[best], f"tune{best}")
                log.info("%s: best setting %s (val %.4g)", e.name, _label(grid[best]), _value(found[best], "val"))
        else:
            chosen = {e.name: (grid[0], None) for e in entries}
        runs, adopted = [], set()
        for e in entries:
            if e.name not in chosen:
                continue
            setting, source = chosen[e.name]
            for k, seed in enumerate(config.seeds):
                run = _Run(e, seed, setting, f"seed{seed}")
                if k == 0 and source is not None:
                    if dry_run and not (out / "runs" / e.name / f"{run.tag}.json").is_file():
                        log.info("%s: would take the best tuning run %s", run.key, source)
                        continue  # nothing to train
                    if not dry_run and _adopt(out, e.name, source, run.tag):
                        adopted.add(run.key)
                runs.append(run)
        records = _execute(runs, config, out, get_executor, dry_run, done, adopted)
    finally:
        for ex in executor:
            ex.close()
    for e in entries:
        done.records[e.name] = [records[key] for s in config.seeds if (key := f"{e.name}/seed{s}") in records]
    return done


def _rank(record: dict[str, Any]) -> float:
    """Smaller is better: the validation metric in the task's direction; NaN is worst."""
    val = _value(record, "val")
    if math.isnan(val):
        return math.inf
    return val if record["result"]["direction"] == "min" else -val


def _label(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "-"


def _adopt(out: Path, name: str, source: str, tag: str) -> bool:
    """The first seed's run with the chosen setting is the winning tuning run: copy its record
    and TensorBoard folder instead of training it again. False if it was there already."""
    target = out / "runs" / name / f"{tag}.json"
    if target.is_file():
        return False
    record = _read_record(out / "runs" / name / f"{source}.json")
    record.update(run=tag, tuned_from=source)
    tb_from, tb_to = out / "tb" / name / source, out / "tb" / name / tag
    if tb_from.is_dir():
        shutil.rmtree(tb_to, ignore_errors=True)
        shutil.copytree(tb_from, tb_to)
    _write_json(target, record)
    log.info("%s/%s: the best tuning run %s (the same seed and setting)", name, tag, source)
    return True


def _execute(runs: Iterable[_Run], config: CompareConfig, out: Path, get_executor: Callable[[], Any], dry_run: bool,
             done: Comparison, adopted: frozenset[str] | set[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """Train the runs without a finished file; return every finished record by run key
    (``adopted``: keys whose file was just copied from a tuning run, neither trained nor skipped)."""
    from growrnn.executors import Job

    records: dict[str, dict[str, Any]] = {}
    todo: dict[str, tuple[_Run, dict[str, Any]]] = {}
    for run in runs:
        settings = run_settings(config, run.entry, run.seed, run.setting)
        path = out / "runs" / run.entry.name / f"{run.tag}.json"
        record = _read_finished(path, settings)
        if record is not None:
            records[run.key] = record
            if not dry_run:  # a finished run's checkpoint left by a kill before its cleanup
                shutil.rmtree(_progress(out, run).parent, ignore_errors=True)
            if run.key in adopted:
                done.adopted.append(run.key)
                continue
            done.skipped.append(run.key)
            log.info("%s: finished before, skipped (%s)", run.key, path)
        else:
            todo[run.key] = (run, settings)
    if dry_run:
        for key, (run, settings) in todo.items():
            parts = run_parts(settings["budget"], config.checkpoint_every)
            going_on = len(parts) > 1 and _read_progress(_progress(out, run), settings, parts, quiet=True)["done"] > 0
            log.info("%s: would train%s", key, " (going on from its checkpoint)" if going_on else "")
        done.pending += list(todo)
        return records
    if not todo:
        return records
    jobs = []
    for key, (run, settings) in todo.items():
        # a run that starts from nothing clears its TensorBoard folder (events of an interrupted try)
        parts = run_parts(settings["budget"], config.checkpoint_every)
        payload = {"settings": settings, "tb": [str(out / "tb"), run.entry.name, run.tag], "threads": config.threads,
                   "parts": parts, "progress": str(_progress(out, run))}
        jobs.append(Job(key, run_one, args=(payload,)))
    log.info("training %d run(s) (%d already done) with %s", len(jobs), len(records),
             f"{config.workers} worker processes" if config.workers else "no worker processes")
    for n, outcome in enumerate(get_executor().run(jobs), 1):
        run, settings = todo[outcome.key]
        if not outcome.ok:
            done.failed.append(outcome.key)
            last = (outcome.error or "").strip().splitlines()[-1:] or ["?"]
            log.error("[%d/%d] %s %s: %s", n, len(jobs), outcome.key, outcome.status, last[0])
            log.debug("%s", outcome.error)
            continue
        record = {"entry": run.entry.name, "family": run.entry.family, "label": run.entry.label, "run": run.tag,
                  "setting": run.setting, "settings": settings, **outcome.value}
        _write_json(out / "runs" / run.entry.name / f"{run.tag}.json", record)
        shutil.rmtree(_progress(out, run).parent, ignore_errors=True)  # its checkpoint is not needed any more
        records[outcome.key] = record
        done.trained.append(outcome.key)
        r = record["result"]
        log.info("[%d/%d] %s: test %s %.4g (val %.4g), units %s, %.0f s%s", n, len(jobs), outcome.key, r["metric"],
                 _value(record, "test"), _value(record, "val"), record["hidden_sizes"], outcome.seconds,
                 " (diverged)" if r["diverged"] else "")
    return records
