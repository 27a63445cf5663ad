"""evaluate(): a result with everything the search and the comparison need; divergence is a result."""

import math
from typing import Any

import pytest

from growrnn.errors import ArgumentError
from growrnn.evaluation import Budget, evaluate
from growrnn.evaluation.config import check_keys, joined_curve
from growrnn.genome import mgu

TASK = {"n_train": 64, "n_eval": 16, "batch_size": 16}


def test_result_fields() -> None:
    r = evaluate(mgu(), "anbncn", Budget(steps=12, val_every=4), seed=1, task_options=TASK,
                 model={"hidden_size": 8, "lr": 0.02})
    assert (r.task, r.metric, r.direction, r.key, r.steps, r.diverged) == ("anbncn", "accuracy", "max", mgu().key,
                                                                          12, False)
    assert 0.0 <= r.val <= 1.0 and r.test is not None and 0.0 <= r.test <= 1.0
    assert [p["step"] for p in r.curve] == [4, 8, 12]
    assert r.params > r.rnn_params > 0 and r.macs_per_step > 0 and r.wall_time > 0


@pytest.mark.parametrize(("steps", "epochs"), [(12, [0, 1, 2]), (10, [1, 2])])  # 4 batches an epoch
def test_a_curve_point_has_the_epoch_its_step_trained_in(steps: int, epochs: list[int]) -> None:
    r = evaluate(mgu(), "anbncn", Budget(steps=steps, val_every=steps // len(epochs)), seed=1, task_options=TASK,
                 model={"hidden_size": 8, "lr": 0.02})
    assert [p["epoch"] for p in r.curve] == epochs  # the last point comes from a validation after fit


def test_same_seed_same_result() -> None:
    runs = [evaluate("gru", "copy", {"steps": 6}, seed=4, task_options={"delay": 3, "n_train": 32, "n_eval": 8,
                                                                        "batch_size": 8},
                     model={"hidden_size": 8}) for _ in range(2)]
    assert runs[0].val == runs[1].val and runs[0].test == runs[1].test


def test_divergence_is_a_result_not_an_exception() -> None:
    r = evaluate("elman", "adding", {"steps": 30}, task_options={"length": 6, "n_train": 64, "n_eval": 8},
                 model={"hidden_size": 8, "optimizer": "sgd", "lr": 1e12})
    assert r.diverged and r.val == math.inf and r.test is None and r.steps < 30


def test_seconds_budget_stops() -> None:
    r = evaluate("lstm", "copy", {"seconds": 1.0}, task_options={"delay": 3, "n_train": 200000, "n_eval": 8},
                 model={"hidden_size": 8}, test=False)
    # the budget, not the data, ended the run: far fewer steps than the 4,000 batches of an epoch
    assert r.steps < 4000 and r.test is None


def test_budget_needs_a_limit() -> None:
    with pytest.raises(ArgumentError, match="'budget'.*at least one of steps, epochs, seconds"):
        Budget()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"steps": 0}, r"'budget.steps'.*an int >= 1.*Received: 0.*trains nothing"),
    ({"steps": -3}, r"'budget.steps'.*Received: -3"),
    ({"steps": 2.5}, r"'budget.steps'.*Received: 2.5"),
    ({"steps": True}, r"'budget.steps'.*Received: True"),
    ({"epochs": 0}, r"'budget.epochs'"),
    ({"steps": 5, "val_every": 0}, r"'budget.val_every'"),
    ({"seconds": 0}, r"'budget.seconds'.*finite number of seconds > 0"),
    ({"seconds": -1.0}, r"'budget.seconds'"),
    ({"seconds": float("nan")}, r"'budget.seconds'.*Received: nan"),
    ({"seconds": float("inf")}, r"'budget.seconds'.*Received: inf"),
])
def test_budget_values_are_checked(kwargs: dict, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        Budget(**kwargs)


def test_extra_callbacks_keep_the_learning_curve() -> None:
    import lightning as L

    class Count(L.Callback):
        calls = 0

        def on_train_batch_end(self, *args, **kwargs) -> None:
            Count.calls += 1

    r = evaluate("gru", "copy", Budget(steps=4, val_every=2), task_options={"delay": 2, "n_train": 32, "n_eval": 8,
                                                                           "batch_size": 8},
                 model={"hidden_size": 8}, trainer={"callbacks": [Count()]})
    assert Count.calls == 4 and [p["step"] for p in r.curve] == [2, 4]


def test_the_seed_sets_the_data_order_too() -> None:
    opts = {"delay": 2, "n_train": 64, "n_eval": 8, "batch_size": 8}
    a, b = (evaluate("gru", "copy", {"steps": 3}, seed=s, task_options=opts, model={"hidden_size": 8}, test=False)
            for s in (1, 2))
    assert a.val != b.val


# a run split in parts that go on from each other's checkpoints (the search's rungs) is the
# uninterrupted run: mid-epoch, on an epoch's end, and over epochs of a shuffled task with dropout.
# Lightning validates when a fit ends, so a part that ends off the validation cadence adds a point
# the uninterrupted run does not have (joined_curve drops it); every other point is the same.
GROW = {"signal": "outgoing_l1", "p_spontaneous": 1.0, "p_delete": 0.0, "max_units": 12}
PAIRED = {"max_units": 12, "paired_steps": 2, "paired_targets": 0}  # the default signal, trials of 2 steps


@pytest.mark.parametrize(("task", "options", "model", "key", "parts", "grow"), [
    ("adding", {"length": 20, **TASK}, {}, "steps", [5, 10, 20], None),       # 4 batches an epoch: mid-epoch
    ("adding", {"length": 20, **TASK}, {}, "steps", [4, 8, 12], None),        # on epochs' ends
    ("adding", {"length": 20, **TASK}, {}, "steps", [2, 4, 7, 8, 13], None),  # five parts, both kinds
    ("adding", {"length": 20, **TASK}, {"hidden_size": [4]}, "steps", [3, 8, 12], GROW),  # growing as it goes
    ("adding", {"length": 20, **TASK}, {"hidden_size": [4]}, "steps", [3, 8, 12], PAIRED),  # a trial across parts
    ("copy", {"delay": 3, "n_train": 64, "n_eval": 8, "batch_size": 8}, {"dropout": 0.3}, "epochs", [1, 2, 4], None),
])
def test_a_run_in_parts_is_the_uninterrupted_run(tmp_path, task: str, options: dict, model: dict, key: str,
                                                 parts: list, grow: dict | None) -> None:
    kw = {"task_options": options, "model": {"hidden_size": 8, "optimizer": "adam", "lr": 0.01, **model},
          "threads": 1, "test": False, "grow": grow}
    extra = {"val_every": 4} if key == "steps" else {}
    whole = evaluate("lstm", task, {key: parts[-1], **extra}, 3, **kw)
    curves, steps, previous = [], [], None
    for k, part in enumerate(parts):
        ckpt = tmp_path / f"part{k}.ckpt" if k < len(parts) - 1 else None
        # a part that another goes on from skips the closing validation: its val is its curve's last
        result = evaluate("lstm", task, {key: part, **extra}, 3, resume_from=previous, checkpoint_to=ckpt,
                          score=ckpt is None, **kw)
        if ckpt is not None:
            assert result.test is None and not result.diverged
            assert result.val == (result.curve[-1]["val"] if result.curve else math.inf)
        curves.append(result.curve)
        steps.append(result.train_steps)
        previous = ckpt
    curve = joined_curve(curves, extra.get("val_every"))
    assert [(p["step"], p["val"]) for p in curve] == [(p["step"], p["val"]) for p in whole.curve]
    assert result.val == whole.val and result.steps == whole.steps and sum(steps) == whole.train_steps
    assert all(s > 0 for s in steps) and result.hidden_sizes == whole.hidden_sizes
    assert result.growth == whole.growth  # what growth did, counted across the parts
    if grow is not None:
        assert whole.growth is not None and whole.growth["added"] != [0], "the structure did change along the way"
        assert whole.hidden_sizes[0] == 4 + whole.growth["added"][0] - whole.growth["deleted"][0]
        assert ("trial_share" in whole.growth) == (grow is PAIRED)
    else:
        assert whole.growth is None


def test_resuming_needs_a_task_name(tmp_path) -> None:
    from growrnn.task import get_task
    with pytest.raises(ArgumentError, match="'task'.*a task name with resume_from.*HINT"):
        evaluate("gru", get_task("adding", length=10, **TASK), {"steps": 2}, checkpoint_to=tmp_path / "x.ckpt")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"budget": {"step": 5}}, r"'budget'.*Allowed: keys steps, epochs, seconds, val_every.*Received: step"),
    ({"budget": "5 steps"}, r"'budget'.*a Budget or a mapping.*Received: 5 steps"),
    ({"trainer": {"max_steps": 3}}, r"'trainer.max_steps'.*not set: evaluate sets.*HINT: evaluate sets the run's len"),
    ({"trainer": {"logger": None}}, r"'trainer.logger'.*not set"),
    # a misspelled or owned key is named (each was a bare TypeError from a constructor)
    ({"trainer": {"gradient_clip_vall": 1.0}}, r"'trainer.gradient_clip_vall'.*gradient_clip_val.*Received"),
    ({"model": {"hidden_size": 4, "hidden_sizee": 4}}, r"'model.hidden_sizee'.*Allowed: .*hidden_size"),
    ({"model": {"hidden_size": 4, "seed": 3}}, r"'model.seed'.*not set: evaluate sets spec, cell, seed"),
    ({"grow": {"signl": "paired"}}, r"'grow.signl'.*Allowed: .*signal"),
    ({"grow": {"decide_at_limit": True}}, r"'grow.decide_at_limit'.*HINT: .*from checkpoint_to"),
    ({"task_options": {"dely": 2}}, r"'task_options.dely'.*Allowed: .*delay.*HINT: options of the task 'copy'"),
    ({"seed": -1}, r"'seed'.*an int >= 0.*Received: -1"),
    ({"resume_from": "no/such.ckpt"}, r"'resume_from'.*Received: no/such.ckpt"),
    ({"model": {"dropout": 1.5}}, r"'dropout'.*\[0, 1\).*Received: 1.5"),
])
def test_evaluate_names_a_bad_argument(kwargs: dict, match: str) -> None:
    """What ``evaluate`` sets itself (the run's length, logger, checkpoints) is not overridden
    through ``trainer``, and every bad argument is named, not a bare TypeError or numpy's error."""
    args = {"budget": {"steps": 2}, "task_options": {"delay": 2, "n_train": 32, "n_eval": 8, "batch_size": 16},
            "model": {"hidden_size": 4}, **kwargs}
    with pytest.raises(ArgumentError, match=match):
        evaluate("gru", "copy", args.pop("budget"), **args, test=False)


def test_task_options_with_a_task_object_are_refused() -> None:
    """A task object is built already: options beside it were silently ignored."""
    from growrnn.task import get_task

    task = get_task("copy", delay=2, n_train=32, n_eval=8, batch_size=16)
    with pytest.raises(ArgumentError, match=r"'task_options'.*no options.*with a task object.*Received: delay"):
        evaluate("gru", task, {"steps": 2}, task_options={"delay": 3}, model={"hidden_size": 4}, test=False)


def test_a_run_with_no_validation_is_refused_by_name() -> None:
    """A run is scored on its validation data: with ``limit_val_batches`` 0 none is validated, and
    the error names the option (it was an IndexError after training)."""
    with pytest.raises(ArgumentError, match="'trainer.limit_val_batches'.*Received: 0"):
        evaluate("gru", "copy", {"steps": 2}, task_options={"delay": 2, "n_train": 32, "n_eval": 8, "batch_size": 16},
                 model={"hidden_size": 4}, trainer={"limit_val_batches": 0}, test=False)


def _named(delay: int = 1, n_train: int = 8) -> None: ...


def _open_ended(delay: int = 1, **more: int) -> None: ...


@pytest.mark.parametrize(("target", "given", "match"), [
    (_named, {"delay": 2}, None),
    (_named, {"dely": 2}, r"'task_options.dely'.*Allowed: delay, n_train.*Received: dely"),
    (_named, {"seed": 2}, r"'task_options.seed'.*not set: the test sets seed"),
    (_open_ended, {"dely": 2, "anything": 3}, None),  # a factory taking **kwargs takes any key
    (_open_ended, {"seed": 2}, r"'task_options.seed'.*not set"),  # but not one the owner sets
])
def test_check_keys(target: Any, given: dict, match: str | None) -> None:
    if match is None:
        check_keys("task_options", given, target, ("seed",), "a hint", "the test", values=False)
    else:
        with pytest.raises(ArgumentError, match=match):
            check_keys("task_options", given, target, ("seed",), "a hint", "the test", values=False)
