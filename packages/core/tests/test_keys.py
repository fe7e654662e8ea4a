"""StepKey builds the keys the workflows have always written, and reads them back."""

from __future__ import annotations

import pytest

from opshelf.core.keys import StepKey, block_glob, iteration_block


@pytest.mark.parametrize(("key", "text"), [
    (StepKey("iter-000002", "run-fp", "000013"), "iter-000002--run-fp-000013"),
    (StepKey("iter-000000", "prep-fp-test"), "iter-000000--prep-fp-test"),
    (StepKey("cu--emt--eos", "post"), "cu--emt--eos--post"),
    (StepKey("cu--emt", "eos").child("run"), "cu--emt--eos--run"),
    (StepKey("", "run-task", "000003"), "run-task-000003"),
    (StepKey("", "collect"), "collect"),
])
def test_key_text_round_trip(key: StepKey, text: str) -> None:
    assert str(key) == text
    assert StepKey.parse(text) == key


def test_fan_out_template_key_is_the_hand_written_one() -> None:
    class Placeholder:  # what a dflow InputParameter formats as
        def __str__(self) -> str:
            return "{{inputs.parameters.block_id}}"

    block = Placeholder()
    assert str(StepKey.fan_out(block, "run-fp")) == f"{block}--run-fp-{{{{item}}}}"
    assert str(StepKey.of(block, "prep-fp")) == "{{inputs.parameters.block_id}}--prep-fp"


def test_iteration_of_a_key() -> None:
    assert StepKey.parse("iter-000002--run-train-000001").iteration == 2
    assert StepKey.parse(f"{iteration_block(7)}--scheduler").iteration == 7
    assert StepKey.parse("cu--emt--post").iteration is None
    assert StepKey.parse("iter-2--post").iteration is None


def test_bad_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="no step key"):
        StepKey.parse("iter-000000--")
    with pytest.raises(ValueError, match="hold no"):
        StepKey("iter-000000", "a--b")


def test_block_glob() -> None:
    assert block_glob("cu--emt--eos") == "cu--emt--eos--*"
