"""The strict, typed config of the concurrent-learning workflow (`opshelf run cl CONFIG`).

    type_map, seed, max_iterations
    init_data:  labelled systems in any dpdata format (several entries)
    train:      DeePMD template, ensemble size, init-model policy, how dp runs
    explore:    engine (lammps | ase-ensemble) and stages; a stage = initial confs (files or
                generated lattices with random substitutions) + task groups + convergence
    select:     trust levels, max frames per iteration, filters (opshelf-md's SelectConfig)
    fp:         any opshelf engine (cp2k, qe, vasp, abacus, gaussian, ase), task, success ratio
    test:       held-out data every iteration's models are scored on (given, or sampled from
                the first exploration and labelled once)
    steps:      execution per step (local by default; dispatcher or argo per step)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from opshelf.core.bounds import (
    DistanceA,
    DistinctNames,
    EnergyEvPerAtom,
    FrameCount,
    Seed,
    SiteFractions,
    StepCount,
)
from opshelf.core.config import StrictModel
from opshelf.core.crystal import CrystalSpec
from opshelf.core.engine import EngineSpec, Task
from opshelf.core.errors import ConfigError
from opshelf.core.execution import StepsConfig
from opshelf.md.explore import ExploreGroup
from opshelf.md.filters import ConfFilters
from opshelf.md.selection import TrustLevels
from opshelf.train.deepmd import DpProfile
from opshelf.train.script import FinetuneOptions, InitModelOptions


class DataSource(StrictModel):
    """Labelled frames: a deepmd/npy folder (or folder of systems) or any file dpdata reads."""

    path: str = Field(description="file or folder, relative to the config file")
    fmt: str = Field("auto", description="dpdata format; 'auto': deepmd/npy for a folder, "
                     "else any file ASE reads with energies and forces (extxyz, OUTCAR, ...)")


class TrainSection(StrictModel):
    template: str | dict[str, Any] = Field(
        description="DeePMD input (file, JSON or YAML, or inline); the data paths are set by "
        "the workflow, model.type_map and seeds too")
    numb_models: int = Field(4, ge=2, le=64, description="ensemble size (>= 2 for model "
                             "deviation; DP-GEN's 4: the spread of two models is one "
                             "difference, not a spread)")
    scale_steps: bool = Field(
        True, description="the template's numb_steps are for the init data; an iteration "
        "training from scratch on more frames trains proportionally more steps, so every "
        "frame gets as many passes as in the first iteration (with fixed steps the models "
        "underfit the growing data set and their deviation rises with every label)")
    max_numb_steps: StepCount | None = Field(None, description="cap of the scaled steps")
    init_model: InitModelOptions = Field(
        default_factory=InitModelOptions, description="whether and how an iteration's training "
        "starts from the previous iteration's models (DPGEN2's init-model policy)")
    dp: DpProfile = Field(default_factory=DpProfile, description="how `dp` is started: "
                          "command, backend, threads, environment")
    init_models: list[str] = Field(
        default_factory=list, description="frozen models, one per ensemble member (files "
        "relative to the config file; .pb, or .pth for the pytorch backend): the first "
        "iteration explores with them as they are, not trained (DPGEN2's init_models_paths); "
        "later iterations start from the previous iteration's models as init_model.policy says")
    finetune_model: str | None = Field(
        None, description="a pretrained model (relative to the config file; a checkpoint .pt "
        "for the pytorch backend, a frozen .pb for tensorflow): before the loop every ensemble "
        "member is fine-tuned from it on the init data (DPGEN2's do_finetune); the first "
        "iteration explores with the fine-tuned models, later iterations start from the "
        "previous iteration's models (init_model.policy, 'yes' unless set; pytorch: with the "
        "model section of those models, not the template's)")
    finetune: FinetuneOptions = Field(
        default_factory=FinetuneOptions, description="the fine-tuning run from "
        "`finetune_model`: branch of a multi-task model ('RANDOM': a new fitting net), the "
        "pretrained model's script, steps and learning rate")

    @model_validator(mode="after")
    def _one_init_model_each(self) -> TrainSection:
        if self.init_models and len(self.init_models) != self.numb_models:
            raise ValueError(f"init_models: {len(self.init_models)} models for numb_models "
                             f"{self.numb_models}; give one per ensemble member")
        if self.finetune_model is not None and self.init_models:
            raise ValueError("finetune_model and init_models both given: the first iteration "
                             "starts from one of them; give finetune_model or init_models")
        return self

    @model_validator(mode="after")
    def _finetune_model_of_the_backend(self) -> TrainSection:
        """The pretrained model's suffix is one the backend fine-tunes (before any work)."""
        if self.finetune_model is not None:
            try:
                self.dp.backend.finetune_args(Path(self.finetune_model), self.finetune)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    def loop_init_model(self) -> InitModelOptions:
        """The init-model options of the loop's iterations: with a finetune_model the policy
        is 'yes' unless the config sets one, and a pytorch init-model run takes the model
        section from the previous (fine-tuned) models."""
        if self.finetune_model is None:
            return self.init_model
        update: dict[str, Any] = {"use_pretrain_script": self.dp.backend.name == "pytorch"}
        if "policy" not in self.init_model.model_fields_set:
            update["policy"] = "yes"
        return self.init_model.model_copy(update=update)


class Substitution(StrictModel):
    """Replace a random fraction of the atoms of one element (alloys from a pure lattice)."""

    replace: str = Field(description="element replaced, e.g. 'Cu'")
    by: SiteFractions = Field(description="element -> fraction of the sites of `replace`")


class LatticeConfs(CrystalSpec):
    """Initial confs generated from a crystal (core's CrystalSpec: fcc, bcc, hcp, diamond, sc;
    hcp's conventional cell is orthorhombic): supercell, random substitutions, rattle."""

    n_confs: FrameCount = Field(1, description="how many configurations (they differ by their "
                         "random substitutions and rattle)")
    substitutions: list[Substitution] = Field(default_factory=list, description="random "
                                              "substitutions of the host's sites")
    rattle_A: DistanceA = Field(0.0, description="standard deviation of random atomic "
                            "displacements (0: none)")
    seed: Seed = Field(0, description="seed of the substitutions and displacements")


class ConfSource(StrictModel):
    files: list[str] | None = Field(None, description="structure files (any dpdata format)")
    fmt: str = Field("auto", description="dpdata format of `files` ('auto': any file ASE reads)")
    generate: LatticeConfs | None = Field(None, description="generate the configurations from a "
                                          "crystal instead of reading `files`")

    @model_validator(mode="after")
    def _one_source(self) -> ConfSource:
        if (self.files is None) == (self.generate is None):
            raise ValueError("give exactly one of 'files' and 'generate'")
        return self


class Convergence(StrictModel):
    """When a stage is done (DPGEN2's convergence checks)."""

    style: Literal["accurate-ratio", "adaptive-lower"] = Field(
        "accurate-ratio", description="accurate-ratio: enough explored frames are accurate; "
        "adaptive-lower: the adaptive lower trust level has settled")
    min_accurate_ratio: float = Field(
        0.97, ge=0, le=1, description="accurate-ratio: converged when at least this fraction "
        "of the explored frames is accurate")
    level_tolerance: float = Field(
        0.005, ge=0, le=100, description="adaptive-lower: converged when the adaptive lower force "
        "level moved by less than this (eV/A) over the last `n_checked` iterations")
    n_checked: int = Field(2, ge=2, le=1000, description="adaptive-lower: iterations over which the "
                           "level must have settled")
    max_failed_ratio: float = Field(
        0.2, ge=0, le=1, description="never converged while more than this fraction of the "
        "explored frames is failed (deviation above f_hi or NaN): the models are still wrong "
        "there, whatever the accurate ratio or the adaptive level says")
    held_out_check: bool = Field(
        True, description="accurate-ratio: never converged while the iteration's held-out "
        "force RMSE is above f_lo (the deviation then understates the error: measured 18x on "
        "a 6-frame CP2K ensemble that called 98 % of its frames accurate); the next iteration "
        "then selects with f_lo scaled by the held-out deviation/error ratio. No effect "
        "without a held-out set")
    max_iterations: int = Field(5, ge=1, le=10_000, description="iterations of this stage at most")
    fatal_at_max: bool = Field(False, description="fail the run when the stage reaches "
                               "max_iterations unconverged (else move on to the next stage)")


class Stage(StrictModel):
    name: str | None = Field(None, description="the stage's name in the status and report")
    confs: ConfSource = Field(description="the configurations the stage's MD starts from")
    groups: list[ExploreGroup] = Field(min_length=1, description="opshelf-md task groups; "
                                       "their `confs` indices count within this stage")
    convergence: Convergence = Field(default_factory=Convergence,
                                     description="when the stage is done")


#: the exploration engines cl fills the trained ensemble into (``opshelf.cl.inputs.with_models``)
ExploreEngine = Literal["lammps", "ase-ensemble"]


class ExploreSection(StrictModel):
    engine: ExploreEngine = Field(
        "lammps", description="lammps (pair_style deepmd) or ase-ensemble (any ASE "
        "calculators as the ensemble)")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="engine settings besides the potential (the "
        "ensemble of trained models is filled in), e.g. lammps' neighbor_skin_A")
    profile: dict[str, Any] = Field(default_factory=dict, description="engine profile "
                                    "(command, mpi_prefix, threads, timeout_s)")
    tasks_per_batch: int = Field(8, ge=1, le=10_000, description="MD runs per process (LAMMPS)")
    stages: list[Stage] = Field(min_length=1, description="explored one after the other, each "
                                "until it converges or reaches its max_iterations")


class SelectSection(StrictModel):
    trust: TrustLevels = Field(description="the model-deviation levels that class a frame as "
                               "accurate, candidate or failed")
    max_select: int | None = Field(None, ge=0, le=10**6, description="frames labelled per iteration "
                                   "at most")
    max_select_ratio: float | None = Field(None, ge=0, le=1, description="at most this "
                                           "fraction of the candidates is labelled")
    filters: ConfFilters = Field(default_factory=ConfFilters, description="checks a picked "
                                 "frame must pass (e.g. min_distance_A); a rejected frame is "
                                 "replaced by the next candidate")


class FpSection(StrictModel):
    engine: EngineSpec = Field(description="the labelling engine: any installed opshelf "
                               "engine with its settings and profile")
    task: Task = Field(default_factory=Task, description="what to compute per frame (single "
                       "point by default)")
    min_success_ratio: float = Field(
        0.8, ge=0, le=1, description="an iteration fails when fewer FP tasks succeed")
    keep_files: list[str] = Field(default_factory=list, description="globs of the raw files "
                                  "kept per task ([]: the engine's inputs and logs; ['**']: "
                                  "everything)")
    max_energy_deviation_eV_per_atom: EnergyEvPerAtom | None = Field(
        5.0, description="a label whose energy per atom differs by more than this from what "
        "the init data's per-element energies predict for its composition is a failed FP "
        "task, never trained on (a squeezed or exploded cell; labels of another level of "
        "theory than the init data); null: no such check")


class TestSection(StrictModel):
    """Held-out frames that score every iteration's models and are never trained on."""

    data: list[DataSource] = Field(
        default_factory=list, description="your own labelled test set (any dpdata format, "
        "as init_data); when given, nothing is sampled")
    n_frames: int = Field(
        16, ge=0, le=10_000, description="without `data`: frames drawn at random from the "
        "first iteration's exploration (all temperatures and confs of the first stage, "
        "accurate frames too) and labelled once by fp.engine, at the cost of that many "
        "labels; 0: no held-out scoring")

    @property
    def sampled(self) -> bool:
        return not self.data and self.n_frames > 0

    @property
    def enabled(self) -> bool:
        return bool(self.data) or self.n_frames > 0


class ClConfig(StrictModel):
    """Configuration of the `cl` workflow."""

    type_map: DistinctNames = Field(min_length=1, description="the elements, in the order "
                                    "the models use")
    seed: Seed = Field(0, description="every random choice derives from (seed, iteration, step)")
    max_iterations: int = Field(20, ge=1, le=10_000, description="iterations over all stages at most")
    init_data: list[DataSource] = Field(min_length=1, description="the labelled frames "
                                        "training starts from")
    train: TrainSection = Field(description="DeePMD-kit training of the ensemble")
    explore: ExploreSection = Field(description="MD with the ensemble, stage by stage")
    select: SelectSection = Field(description="which explored frames get labelled")
    fp: FpSection = Field(description="labelling of the selected frames")
    test: TestSection = Field(default_factory=TestSection, description="the held-out frames "
                              "every iteration's models are scored on")
    steps: StepsConfig = Field(default_factory=StepsConfig, description="how each step runs: "
                               "`default` and per-step overrides (run-train, run-explore, "
                               "run-fp, ...; see the cluster guide)")
