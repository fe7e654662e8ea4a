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
    #: the factor on the configured f_lo this iteration selected with (below 1 after the
    #: held-out set showed the previous ensemble overconfident)
    f_lo_scale: float = 1.0
    converged: bool = False
    decision: str = ""
    #: frames this iteration's models were trained on (init data + earlier iterations' labels)
    n_train_frames: int | None = None
    #: this iteration's models on the held-out set (None: no held-out set)
    test_n_frames: int | None = None
    #: RMSE of each model, averaged over the ensemble (what any one model scores)
    test_energy_rmse_eV_per_atom: float | None = None
    test_force_rmse_eV_per_A: float | None = None
    test_virial_rmse_eV_per_atom: float | None = None
    #: median over held-out frames of the ensemble's max force deviation, beside the median
    #: max error of its mean force: whether the deviation the loop trusts tracks the error
    test_devi_f_median_eV_per_A: float | None = None
    test_max_force_error_median_eV_per_A: float | None = None
    #: the models on their own training frames: fit error, and their deviation there (the
    #: floor under which no explored frame's deviation can be expected to fall)
    train_force_rmse_eV_per_A: float | None = None
    train_devi_f_median_eV_per_A: float | None = None

    @property
    def configured_f_lo(self) -> float | None:
        """The user's f_lo (level_f_lo is the level selection used, after any scaling)."""
        return None if self.level_f_lo is None else self.level_f_lo / self.f_lo_scale

    def held_out_contradicts(self) -> bool:
        """The held-out force RMSE is above the configured f_lo: the deviation understates
        the error, so frames it calls accurate are not (accurate-ratio stages only)."""
        f_lo, rmse = self.configured_f_lo, self.test_force_rmse_eV_per_A
        return f_lo is not None and rmse is not None and rmse > f_lo

    def calibrated_f_lo_scale(self) -> float:
        """1 / (median max error / median max deviation) on the held-out frames, at most 1:
        the factor that makes f_lo select where the error, not the spread, is above it."""
        devi, error = self.test_devi_f_median_eV_per_A, self.test_max_force_error_median_eV_per_A
        if not devi or error is None or error <= devi:
            return 1.0
        return devi / error


class LoopState(BaseModel):
    iteration: int = 0
    stage: int = 0
    stage_iteration: int = 0
    history: list[IterationRecord] = Field(default_factory=list)
    done: bool = False
    #: every stage met its convergence criterion (only meaningful once done)
    converged: bool = False
    reason: str = ""
    #: labelled frames of init_data (the learning curve's first x)
    n_init_frames: int = 0
    stage_names: list[str] = Field(default_factory=list)
    #: held-out frames to sample in the first iteration (0: given test data, or none)
    n_test_sample: int = 0
    #: factor on f_lo for the next iteration's selection (held_out_check: below 1 while the
    #: held-out set shows the ensemble overconfident)
    f_lo_scale: float = 1.0

    @property
    def configured_f_lo(self) -> float | None:
        """The user's f_lo, from the last iteration's record (the select parameters handed
        from block to block carry the scaled level: scaling those again would compound)."""
        return self.history[-1].configured_f_lo if self.history else None


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
        if conv.held_out_check and record.held_out_contradicts():
            return False
        return record.n_frames > 0 and record.accurate_ratio >= conv.min_accurate_ratio
    levels = [r.level_f_lo for r in [*earlier, record]][-conv.n_checked:]
    if len(levels) < conv.n_checked or any(v is None for v in levels):
        return False
    return max(levels) - min(levels) < conv.level_tolerance  # type: ignore[type-var,operator]


def make_record(state: LoopState, select_report: dict[str, Any],
                fp_summary: dict[str, Any] | None,
                test_score: dict[str, Any] | None = None) -> IterationRecord:
    overall = select_report.get("overall", {})
    fp_summary = fp_summary or {}
    return IterationRecord(
        n_train_frames=state.n_init_frames + sum(r.n_labelled for r in state.history),
        **_score_fields(test_score),
        iteration=state.iteration, stage=state.stage, stage_iteration=state.stage_iteration,
        n_frames=int(overall.get("n_frames", 0)),
        accurate_ratio=float(overall.get("accurate_ratio", 0.0)),
        candidate_ratio=float(overall.get("candidate_ratio", 0.0)),
        failed_ratio=float(overall.get("failed_ratio", 0.0)),
        n_candidates=int(overall.get("n_candidate", 0)),
        n_selected=int(overall.get("n_selected", 0)),
        n_labelled=int(fp_summary.get("n_frames", 0)),
        n_fp_failed=int(fp_summary.get("n_failed", 0)),
        level_f_lo=select_report.get("level_f_lo"), f_lo_scale=state.f_lo_scale)


def _score_fields(score: dict[str, Any] | None) -> dict[str, Any]:
    """IterationRecord's test_* and train_* fields from ScoreCl's score: {"test":
    EnsembleScore or None, "train": EnsembleScore or None} as JSON."""
    out: dict[str, Any] = {}
    test, train = (score or {}).get("test"), (score or {}).get("train")
    if test:
        mean = test["mean_of_models"]
        out.update(test_n_frames=test["n_frames"],
                   test_energy_rmse_eV_per_atom=mean["energy_rmse_eV_per_atom"],
                   test_force_rmse_eV_per_A=mean["force_rmse_eV_per_A"],
                   test_virial_rmse_eV_per_atom=mean.get("virial_rmse_eV_per_atom"),
                   test_devi_f_median_eV_per_A=test.get("devi_f_median_eV_per_A"),
                   test_max_force_error_median_eV_per_A=test.get(
                       "max_force_error_median_eV_per_A"))
    if train:
        out.update(train_force_rmse_eV_per_A=train["mean_of_models"]["force_rmse_eV_per_A"],
                   train_devi_f_median_eV_per_A=train.get("devi_f_median_eV_per_A"))
    return out


def floor_warning(record: IterationRecord) -> str | None:
    """A lower trust level under the models' deviation on frames they were trained on: most
    explored frames cannot become accurate however many labels are added."""
    floor, f_lo = record.train_devi_f_median_eV_per_A, record.configured_f_lo
    if floor is None or f_lo is None or floor < f_lo:
        return None
    return (f"f_lo {f_lo:g} eV/A is not above the models' deviation on their own training "
            f"frames (median {floor:.3f}): train longer or larger models, or raise f_lo")


def why_unconverged(conv: Convergence, record: IterationRecord,
                    earlier: Sequence[IterationRecord]) -> str:
    """Which part of the stage's criterion its last iteration missed, with the numbers."""
    if record.failed_ratio > conv.max_failed_ratio:
        return f"failed ratio {record.failed_ratio:.3f} > {conv.max_failed_ratio}"
    if conv.style == "accurate-ratio":
        if record.accurate_ratio < conv.min_accurate_ratio or not (
                conv.held_out_check and record.held_out_contradicts()):
            return f"accurate ratio {record.accurate_ratio:.3f} < {conv.min_accurate_ratio}"
        return (f"accurate ratio {record.accurate_ratio:.3f}, but held-out force RMSE "
                f"{record.test_force_rmse_eV_per_A:.3f} > f_lo {record.configured_f_lo:g} "
                "eV/A: the ensemble is overconfident")
    levels = [r.level_f_lo for r in [*earlier, record]][-conv.n_checked:]
    if len(levels) < conv.n_checked or any(v is None for v in levels):
        return f"fewer than {conv.n_checked} iterations to compare the adaptive level"
    moved = max(levels) - min(levels)  # type: ignore[type-var,operator]
    return f"adaptive lower level moved by {moved:.4f} >= {conv.level_tolerance} eV/A"


def outcome(state: LoopState, convergence: Sequence[Convergence],
            run_cap: int | None = None) -> tuple[bool, str]:
    """(every stage converged, one line saying so or naming each stage that did not and
    why); for a finished loop. `run_cap`: the loop stopped at the run's max_iterations
    (not at a stage's)."""
    missed = []
    for index, conv in enumerate(convergence):
        name = state.stage_names[index] if index < len(state.stage_names) else ""
        stage = f"stage {index} {name!r}" if name else f"stage {index}"
        records = [r for r in state.history if r.stage == index]
        if not records:
            missed.append(f"{stage}: never run")
        elif not records[-1].converged:
            missed.append(f"{stage}: {why_unconverged(conv, records[-1], records[:-1])}")
    if not missed:
        return True, "converged: every stage met its criterion"
    limit = "max iterations" if run_cap is None else f"max_iterations ({run_cap})"
    return False, f"stopped at {limit}, not converged ({'; '.join(missed)})"


def advance(state: LoopState, select_report: dict[str, Any], fp_summary: dict[str, Any] | None,
            convergence: Sequence[Convergence], max_iterations: int,
            test_score: dict[str, Any] | None = None) -> LoopState:
    """The state after the iteration `state.iteration` finished with these reports.

    Raises StageFailed when a `fatal_at_max` stage ends unconverged."""
    if state.done:
        raise ValueError("advance() on a finished loop")
    record = make_record(state, select_report, fp_summary, test_score)
    conv = convergence[state.stage]
    earlier = [r for r in state.history if r.stage == state.stage]
    record.converged = stage_converged(conv, record, earlier)
    new = state.model_copy(deep=True)
    new.history.append(record)
    new.iteration = state.iteration + 1
    at_max = state.stage_iteration + 1 >= conv.max_iterations
    if not record.converged and at_max and conv.fatal_at_max:
        record.decision = "failed: stage unconverged at max_iterations"
        raise StageFailed(
            f"stage {state.stage} did not converge in {conv.max_iterations} iterations "
            f"({why_unconverged(conv, record, earlier)}) and fatal_at_max is set")
    record.decision = ("converged" if record.converged else
                       "max iterations, move on" if at_max else "continue")
    if not record.converged:
        if record.failed_ratio > conv.max_failed_ratio:
            record.decision += (f" (failed ratio {record.failed_ratio:.3f} > "
                                f"{conv.max_failed_ratio})")
        warning = floor_warning(record)
        record.decision += f"; {warning}" if warning else ""
    new.f_lo_scale = 1.0 if at_max else _next_f_lo_scale(conv, record)
    if new.f_lo_scale < 1:
        record.decision += (f"; held-out force RMSE {record.test_force_rmse_eV_per_A:.3f} > "
                            f"f_lo {record.configured_f_lo:g} eV/A, the deviation "
                            f"{1 / new.f_lo_scale:.1f}x below the error: next selection "
                            f"with f_lo {record.configured_f_lo * new.f_lo_scale:.3g}")
    if record.converged or at_max:
        new.stage, new.stage_iteration = state.stage + 1, 0
    else:
        new.stage_iteration = state.stage_iteration + 1
    if new.stage >= len(convergence) or new.iteration >= max_iterations:
        new.done = True
        capped = max_iterations if new.stage < len(convergence) else None
        new.converged, new.reason = outcome(new, convergence, capped)
    return new


def _next_f_lo_scale(conv: Convergence, record: IterationRecord) -> float:
    """The factor on f_lo for the next selection: the held-out calibration while the
    held-out set contradicts the deviation (an overconfident ensemble would otherwise select
    almost nothing and never learn where it is wrong), else 1."""
    if conv.style != "accurate-ratio" or not conv.held_out_check:
        return 1.0
    return record.calibrated_f_lo_scale() if record.held_out_contradicts() else 1.0


def _scaled_trust(select: dict[str, Any], state: LoopState) -> dict[str, Any]:
    """The trust levels with f_lo = the user's f_lo x state.f_lo_scale (fixed styles)."""
    trust = dict(select.get("trust") or {})
    if state.configured_f_lo is not None and trust.get("style") != "adaptive-lower":
        trust["f_lo"] = state.configured_f_lo * state.f_lo_scale
    return trust


def iteration_inputs(state: LoopState, stages_explore: Sequence[dict[str, Any]],
                     select: dict[str, Any], seed: int) -> dict[str, Any]:
    """The per-iteration parameters of the block that runs `state.iteration`."""
    return {
        "block_id": block_id(state.iteration),
        # new MD velocity seeds every iteration (else each iteration repeats the same runs)
        "explore": {**stages_explore[min(state.stage, len(stages_explore) - 1)],
                    "seed": derived_seed(seed, state.iteration, "explore")},
        # the held-out sample comes from the first exploration only
        "select": {**{k: v for k, v in select.items() if k != "n_test"},
                   **({"trust": _scaled_trust(select, state)}
                      if state.configured_f_lo is not None else {}),
                   "seed": derived_seed(seed, state.iteration, "select"),
                   **({"n_test": state.n_test_sample}
                      if state.iteration == 0 and state.n_test_sample else {})},
        "train_seed": derived_seed(seed, state.iteration, "train"),
    }
