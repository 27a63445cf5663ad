"""The shared argument checks of growrnn.errors."""

from __future__ import annotations

import pytest

from growrnn.errors import ArgumentError, check_choice


@pytest.mark.parametrize("value, choices, accepted", [
    ("min", ("min", "max"), True), ("max", ("min", "max"), True), ("up", ("min", "max"), False),
    (None, ("min", "max", None), True), (None, ("min", "max"), False), (["min"], ("min", "max"), False),
    ("auto", (True, False, "auto"), True), (False, (True, False, "auto"), True), ("yes", (True, False, "auto"), False),
])
def test_a_choice_is_one_of_its_choices_or_an_error_that_lists_them(value: object, choices: tuple,
                                                                     accepted: bool) -> None:
    if accepted:
        assert check_choice("option", value, choices) is value
        return
    allowed = ", ".join(map(str, choices))
    with pytest.raises(ArgumentError, match=rf"'option'.*Allowed: {allowed}\..*Received: .*HINT: x"):
        check_choice("option", value, choices, hint="x")


@pytest.mark.parametrize("argument, prefix, named", [
    ("paired_steps", "grow", "grow.paired_steps"),
    ("min_units, max_units", "entries[1].grow", "entries[1].grow.min_units, entries[1].grow.max_units")])
def test_an_error_under_a_config_key_names_the_full_key(argument: str, prefix: str, named: str) -> None:
    err = ArgumentError(argument, allowed="an int >= 1", received=0, hint="h").under(prefix)
    assert err.argument == named
    assert str(err) == f"invalid argument '{named}'. Allowed: an int >= 1. Received: 0. HINT: h"


@pytest.mark.parametrize("received, shown", [
    (20, "Received: 20."), ("20", "Received: '20'."), ("0.5", "Received: '0.5'."), ("nan", "Received: 'nan'."),
    ("true", "Received: 'true'."), ("", "Received: ''."), ("no/such.ckpt", "Received: no/such.ckpt."),
    ("a checkpoint of task copy", "Received: a checkpoint of task copy."), (None, "Received: None.")])
def test_a_string_that_reads_as_a_value_is_shown_quoted(received: object, shown: str) -> None:
    """``"20"`` where an int is allowed must not read as the number 20; a path or a description
    is shown as it is."""
    assert shown in str(ArgumentError("x", allowed="an int >= 1", received=received))
