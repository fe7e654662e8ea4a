"""Patch 6 of opshelf.core.local.patches: the pool of a dflow Steps' parallel list pickles a
call when it is submitted. Stock, a call that waits for a free worker is pickled later, while
dflow's main thread writes the finished steps' outputs; alloy's phonon block was once marked
failed without running ("dictionary changed size during iteration")."""

from __future__ import annotations

import time

from opshelf.core.local import patches


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _keys(mapping: dict[str, int]) -> list[str]:
    return sorted(mapping)


def test_parallel_list_pool_pickles_a_waiting_call_when_it_is_submitted() -> None:
    import dflow.steps

    patches.apply()
    pool_class = dflow.steps.ProcessPoolExecutor
    outputs = {"a": 1}
    with pool_class(1) as pool:
        # one worker busy, one call queued beside it: the third call waits for room, which
        # is when the stock pool pickles it
        busy = [pool.submit(_sleep, 0.5), pool.submit(_sleep, 0.1)]
        waiting = pool.submit(_keys, outputs)
        outputs["b"] = 2  # as dflow's main thread does with a finished step's outputs
        assert waiting.result(timeout=60) == ["a"]
        assert [f.result(timeout=60) for f in busy] == [0.5, 0.1]
