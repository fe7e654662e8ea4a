"""Patch 6 of opshelf.core.local.patches: the pool of a dflow Steps' parallel list pickles a
call when it is submitted. Stock, a call that waits for a free worker is pickled later, while
dflow's main thread writes the finished steps' outputs; alloy's phonon block was once marked
failed without running ("dictionary changed size during iteration"). The pool of a sliced
step's fan-out (dflow.step) is the same class and is patched the same way.

Patch 7: a Step's fan-out copies (``parallel_steps``) are left out when it is copied or
pickled; dflow hands every item's call a copy of the parent Steps made after the copies
exist, so each call carried all N of them."""

from __future__ import annotations

import pickle
import time
from copy import deepcopy

import pytest
from dflow.python import OP, OPIO, OPIOSign

from opshelf.core.local import patches


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _keys(mapping: dict[str, int]) -> list[str]:
    return sorted(mapping)


class Noop(OP):
    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({})

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({})

    def execute(self, ip: OPIO) -> OPIO:
        return OPIO({})


@pytest.mark.parametrize("module", ["dflow.steps", "dflow.step"])
def test_parallel_list_pool_pickles_a_waiting_call_when_it_is_submitted(module: str) -> None:
    import importlib

    patches.apply()
    pool_class = importlib.import_module(module).ProcessPoolExecutor
    outputs = {"a": 1}
    with pool_class(1) as pool:
        # one worker busy, one call queued beside it: the third call waits for room, which
        # is when the stock pool pickles it
        busy = [pool.submit(_sleep, 0.5), pool.submit(_sleep, 0.1)]
        waiting = pool.submit(_keys, outputs)
        outputs["b"] = 2  # as dflow's main thread does with a finished step's outputs
        assert waiting.result(timeout=60) == ["a"]
        assert [f.result(timeout=60) for f in busy] == [0.5, 0.1]


def test_a_steps_fanout_copies_are_not_copied_or_pickled_with_it() -> None:
    from dflow import Steps
    from dflow.python import PythonOPTemplate

    from opshelf.core.dflow_build import make_step
    from opshelf.core.execution import StepExecution

    patches.apply()
    step = make_step("noop", Noop, StepExecution(), key="noop")
    assert isinstance(step.template, PythonOPTemplate)
    scope = Steps("scope")
    scope.add(step)
    alone = len(pickle.dumps(deepcopy(scope)))
    # what dflow's sliced step does before it copies its scope for the items' calls
    step.parallel_steps = [deepcopy(step) for _ in range(50)]
    copied = deepcopy(scope)
    assert not hasattr(copied.steps[0][0] if isinstance(copied.steps[0], list)
                       else copied.steps[0], "parallel_steps")
    # stock: 50 step copies in every call's scope (~50x the size); a few bytes of slack
    assert len(pickle.dumps(copied)) <= alone + 100
    assert len(step.parallel_steps) == 50  # the original keeps them: its fan-out reads them
