"""The loop's scheduler: stages, convergence per stage, iteration limits. Pure functions.

The loop state is small and serialisable (a dict on the wire, `LoopState` here): which
iteration runs next, in which stage, and one `IterationRecord` per finished iteration.
After every iteration `advance` reads that iteration's selection report and FP summary and
decides: stay in the stage, move to the next one, stop (all stages done or the global
iteration cap), or fail (a stage unconverged at its max with `fatal_at_max`).

Every random choice of an iteration derives from (global seed, iteration, step):
`derived_seed` is the one place that mixes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from opshelf.cl.config import Convergence


class IterationRecord(BaseModel):
    iteration: int
    stage: int
    stage_iteration: int
    n_frames: int = 0
    accurate_ratio: float = 0.0
    candidate_ratio: float = 0.0
    failed_ratio: float = 0.0
    n_candidates: int = 0
    n_selected: int = 0
    n_labelled: int = 0
    n_fp_failed: int = 0
    level_f_lo: float | None = None
    converged: bool = False
    decision: str = ""


class LoopState(BaseModel):
    iteration: int = 0
    stage: int = 0
    stage_iteration: int = 0
    history: list[IterationRecord] = Field(default_factory=list)
    done: bool = False
    reason: str = ""


class StageFailed(Exception):
    """A stage with `fatal_at_max` reached its max iterations unconverged."""


def block_id(iteration: int) -> str:
    return f"iter-{iteration:06d}"


def derived_seed(seed: int, iteration: int, step: str) -> int:
    """A 31-bit seed from (global seed, iteration, step name): stable across processes."""
    digest = hashlib.sha256(f"{seed}:{iteration}:{step}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def stage_converged(conv: Convergence, record: IterationRecord,
                    earlier: Sequence[IterationRecord]) -> bool:
    """Whether the stage is converged after `record` (`earlier`: its previous iterations)."""
    if record.failed_ratio > conv.max_failed_ratio:
        return False
    if conv.style == "accurate-ratio":
        return record.n_frames > 0 and record.accurate_ratio >= conv.min_accurate_ratio
    levels = [r.level_f_lo for r in [*earlier, record]][-conv.n_checked:]
    if len(levels) < conv.n_checked or any(v is None for v in levels):
        return False
    return max(levels) - min(levels) < conv.level_tolerance  # type: ignore[type-var,operator]


def make_record(state: LoopState, select_report: dict[str, Any],
                fp_summary: dict[str, Any] | None) -> IterationRecord:
    overall = select_report.get("overall", {})
    fp_summary = fp_summary or {}
    return IterationRecord(
        iteration=state.iteration, stage=state.stage, stage_iteration=state.stage_iteration,
        n_frames=int(overall.get("n_frames", 0)),
        accurate_ratio=float(overall.get("accurate_ratio", 0.0)),
        candidate_ratio=float(overall.get("candidate_ratio", 0.0)),
        failed_ratio=float(overall.get("failed_ratio", 0.0)),
        n_candidates=int(overall.get("n_candidate", 0)),
        n_selected=int(overall.get("n_selected", 0)),
        n_labelled=int(fp_summary.get("n_frames", 0)),
        n_fp_failed=int(fp_summary.get("n_failed", 0)),
        level_f_lo=select_report.get("level_f_lo"))


def advance(state: LoopState, select_report: dict[str, Any], fp_summary: dict[str, Any] | None,
            convergence: Sequence[Convergence], max_iterations: int) -> LoopState:
    """The state after the iteration `state.iteration` finished with these reports.

    Raises StageFailed when a `fatal_at_max` stage ends unconverged."""
    if state.done:
        raise ValueError("advance() on a finished loop")
    record = make_record(state, select_report, fp_summary)
    conv = convergence[state.stage]
    earlier = [r for r in state.history if r.stage == state.stage]
    record.converged = stage_converged(conv, record, earlier)
    new = state.model_copy(deep=True)
    new.history.append(record)
    new.iteration = state.iteration + 1
    at_max = state.stage_iteration + 1 >= conv.max_iterations
    if record.converged or at_max:
        if not record.converged and conv.fatal_at_max:
            record.decision = "failed: stage unconverged at max_iterations"
            raise StageFailed(
                f"stage {state.stage} did not converge in {conv.max_iterations} iterations "
                f"(accurate ratio {record.accurate_ratio:.3f}, failed ratio "
                f"{record.failed_ratio:.3f}) and fatal_at_max is set")
        record.decision = "converged" if record.converged else "max iterations, move on"
        if not record.converged and record.failed_ratio > conv.max_failed_ratio:
            record.decision += (f" (failed ratio {record.failed_ratio:.3f} > "
                                f"{conv.max_failed_ratio})")
        new.stage, new.stage_iteration = state.stage + 1, 0
        if new.stage >= len(convergence):
            new.done, new.reason = True, ("all stages converged" if all(
                r.converged for r in _last_of_each_stage(new.history)) else "all stages done")
            return new
    else:
        record.decision = "continue"
        if record.failed_ratio > conv.max_failed_ratio:
            record.decision += f" (failed ratio {record.failed_ratio:.3f} > {conv.max_failed_ratio})"
        new.stage_iteration = state.stage_iteration + 1
    if new.iteration >= max_iterations:
        new.done, new.reason = True, f"max_iterations ({max_iterations}) reached"
    return new


def _last_of_each_stage(history: Sequence[IterationRecord]) -> list[IterationRecord]:
    last: dict[int, IterationRecord] = {}
    for record in history:
        last[record.stage] = record
    return [last[k] for k in sorted(last)]


def iteration_inputs(state: LoopState, stages_explore: Sequence[dict[str, Any]],
                     select: dict[str, Any], seed: int) -> dict[str, Any]:
    """The per-iteration parameters of the block that runs `state.iteration`."""
    return {
        "block_id": block_id(state.iteration),
        # new MD velocity seeds every iteration (else each iteration repeats the same runs)
        "explore": {**stages_explore[min(state.stage, len(stages_explore) - 1)],
                    "seed": derived_seed(seed, state.iteration, "explore")},
        "select": {**select, "seed": derived_seed(seed, state.iteration, "select")},
        "train_seed": derived_seed(seed, state.iteration, "train"),
    }
