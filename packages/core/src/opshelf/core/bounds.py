"""Physical sanity bounds shared by every config model: one annotated type per kind of number.

A config field says what it holds (`lattice_constant_A: LatticeConstantA`) instead of checking
it in code, so that every package refuses the same nonsense the same way, before any work
starts: a lattice constant in nm where Å is meant, MD at 1e9 K, ten to the twelve frames, a
zero supercell, a pool of no workers. Each failure names the key, the value and the accepted
range (through `opshelf.core.config.format_validation_error`), e.g.::

    generate.lattice_constant_A: outside the accepted range [1, 100] Å (got 0.359)

`StrictModel` already refuses infinite and NaN floats; these types add the range. The bounds
are wide on purpose: they catch unit mistakes and typos, not unusual science.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field


def bounded(base: type, low: float, high: float, unit: str = "", *,
            low_open: bool = False) -> Any:
    """`base` (int or float) within [low, high] (or (low, high] with `low_open`): an annotated
    type whose error names the range and the unit, with minimum/maximum in its JSON Schema."""
    left = "(" if low_open else "["
    where = f"{left}{low:g}, {high:g}]" + (f" {unit}" if unit else "")

    def check(value: Any) -> Any:
        number = float(value)
        below = number <= low if low_open else number < low
        if not math.isfinite(number) or below or number > high:
            raise ValueError(f"outside the accepted range {where}")
        return value

    schema: dict[str, Any] = {"maximum": high}
    schema["exclusiveMinimum" if low_open else "minimum"] = low
    return Annotated[base, AfterValidator(check), Field(json_schema_extra=schema)]


def bounded_or_word(base: type, low: float, high: float, word: str, unit: str = "") -> Any:
    """`base` within [low, high], or the string `word` (e.g. 'auto'): one error naming both
    (a plain union would report each branch's error, the range and "should be 'auto'")."""
    where = f"[{low:g}, {high:g}]" + (f" {unit}" if unit else "")

    def check(value: Any) -> Any:
        if value == word:
            return value
        if not math.isfinite(float(value)) or not low <= float(value) <= high:
            raise ValueError(f"outside the accepted values: {word!r} or {where}")
        return value

    return Annotated[base | Literal[word],  # type: ignore[valid-type]
                     AfterValidator(check),
                     Field(json_schema_extra={"minimum": low, "maximum": high})]


#: a lattice constant or cell length: Å (0.359 is a value in nm)
LatticeConstantA = bounded(float, 1.0, 100.0, "Å")
#: a temperature of a simulation: K (above 0, at most 20000 K)
TemperatureK = bounded(float, 0.0, 2.0e4, "K", low_open=True)
#: a temperature where 0 K is meaningful (phonon free energies at 0 K)
TemperatureOrZeroK = bounded(float, 0.0, 2.0e4, "K")
#: a pressure: bar (±10 Mbar = ±1 TPa)
PressureBar = bounded(float, -1.0e7, 1.0e7, "bar")
#: a pressure: GPa (±1000 GPa)
PressureGPa = bounded(float, -1.0e3, 1.0e3, "GPa")
#: an MD time step: fs
TimestepFs = bounded(float, 0.0, 20.0, "fs", low_open=True)
#: a number of MD or optimisation steps
StepCount = bounded(int, 1, 10**9, "steps")
#: a number of steps that may be zero (e.g. an equilibration before the recorded part)
StepCountOrZero = bounded(int, 0, 10**9, "steps")
#: how many frames / structures / samples a config asks to make (each one is real work)
FrameCount = bounded(int, 1, 10**6, "frames")
#: a repeat of the cell along one axis
SupercellRepeat = bounded(int, 1, 50)
#: a supercell: three repeats, each in [1, 50]
Supercell = tuple[SupercellRepeat, SupercellRepeat, SupercellRepeat]
#: a wall-clock limit: seconds (above 0, at most 30 days)
TimeoutS = bounded(float, 0.0, 30 * 86400.0, "s", low_open=True)
#: a number of parallel workers, processes or threads
PoolSize = bounded(int, 1, 4096, "workers")


def _pool_size(value: int) -> int:
    if value != -1 and not 1 <= value <= 4096:
        raise ValueError("outside the accepted values: -1 (all at once) or [1, 4096] workers")
    return value


#: a process pool size where -1 means one worker per item
PoolSizeOrAll = Annotated[int, AfterValidator(_pool_size),
                          Field(json_schema_extra={"minimum": -1, "maximum": 4096})]
#: a number of retries of a failed step or task
RetryCount = bounded(int, 0, 100, "retries")
#: a fraction in [0, 1] (ratios, probabilities)
Fraction = bounded(float, 0.0, 1.0)
#: a displacement, rattle amplitude or distance in Å (at most 10 Å)
DistanceA = bounded(float, 0.0, 10.0, "Å")
#: a cutoff radius: Å
CutoffA = bounded(float, 0.0, 50.0, "Å", low_open=True)
#: a (uniform) strain: dimensionless, at most 50 %
Strain = bounded(float, -0.5, 0.5)
#: a random seed
Seed = bounded(int, 0, 2**32 - 1)
#: a force threshold or error: eV/Å (positive, at most 1000 eV/Å)
ForceEvA = bounded(float, 0.0, 1.0e3, "eV/Å")
#: an energy per atom threshold or error: eV/atom
EnergyEvPerAtom = bounded(float, 0.0, 1.0e3, "eV/atom")
#: a force convergence threshold: eV/Å (above 0, at most 100)
ForceThresholdEvA = bounded(float, 0.0, 100.0, "eV/Å", low_open=True)
#: a thermostat or barostat damping time: fs
DampingTimeFs = bounded(float, 0.0, 1.0e6, "fs", low_open=True)
#: a number of GPUs
GpuCount = bounded(int, 0, 64, "GPUs")


def _distinct(value: list[str]) -> list[str]:
    repeated = sorted({name for name in value if value.count(name) > 1})
    if repeated:
        raise ValueError(f"each name once; repeated: {', '.join(repeated)}")
    return value


#: names that must not repeat, in their order (a type_map: one entry per element)
DistinctNames = Annotated[list[str], AfterValidator(_distinct)]
#: k points along one reciprocal axis of a Monkhorst-Pack mesh
KPointCount = bounded(int, 1, 200, "k points")
#: a plane-wave or grid cutoff: Ry (a value in eV where Ry is meant is caught above 10000)
CutoffRy = bounded(float, 0.0, 1.0e4, "Ry", low_open=True)
#: SCF iterations at most
ScfSteps = bounded(int, 1, 100_000, "iterations")
#: an SCF or energy convergence threshold (EPS_SCF, conv_thr, scf_thr): above 0, at most 0.01
#: (a larger one is no convergence at all)
ConvergenceThreshold = bounded(float, 0.0, 1.0e-2, low_open=True)
#: an electronic smearing width: Ry (above 0, at most 0.5 Ry = 6.8 eV)
SmearingRy = bounded(float, 0.0, 0.5, "Ry", low_open=True)
#: a k-point spacing: 1/Å (above 0; past ~2π/a it is one k point anyway)
KSpacingPerA = bounded(float, 0.0, 10.0, "1/Å", low_open=True)
#: a net charge of the cell or molecule: elementary charges
ChargeE = bounded(int, -100, 100, "e")
#: a spin multiplicity 2S+1, or 'auto' (dpdata's rule)
MultiplicityOrAuto = bounded_or_word(int, 1, 100, "auto")
#: a count of extra orbitals or other solver sizes that may be zero
OrbitalCount = bounded(int, 0, 100_000, "orbitals")
#: a neighbour-list skin or other small length that must be above 0: Å
SkinA = bounded(float, 0.0, 10.0, "Å", low_open=True)
#: a Cartesian coordinate or cell-vector component: Å
CoordinateA = bounded(float, -1.0e4, 1.0e4, "Å")
#: a length of a cell or slab that a config asks for: Å (0 allowed: no minimum)
LengthA = bounded(float, 0.0, 1.0e3, "Å")
#: an index into a list of structures, sites or configurations
IndexCount = bounded(int, 0, 10**9)
#: a Miller index component
MillerComponent = bounded(int, -20, 20)
#: a size of a batch of structures or frames
BatchSize = bounded(int, 1, 10**6, "frames")
#: a relative weight or loss prefactor (dimensionless, at most 1e4)
Weight = bounded(float, 0.0, 1.0e4)
#: a virial deviation threshold or error: eV/atom (above 0)
VirialEvPerAtom = bounded(float, 0.0, 1.0e3, "eV/atom", low_open=True)
#: a number of frames/structures that serves as a reference (at most 1e9)
ReferenceCount = bounded(int, 1, 10**9, "frames")


def _site_fractions(value: dict[str, float]) -> dict[str, float]:
    if not value:
        raise ValueError("give at least one element and its fraction")
    total = sum(value.values())
    if total > 1.0 + 1e-9:
        raise ValueError(f"the fractions of the replaced sites sum to at most 1 (got {total:g})")
    return value


#: element -> fraction of a host's sites it takes: each in [0, 1], together at most 1 (the
#: host keeps the rest); a composition given in percent (25 for 0.25) is refused here
SiteFractions = Annotated[dict[str, Fraction], AfterValidator(_site_fractions)]
#: slices packed into one step of a fan-out, or 'auto' (picked by the executor)
GroupSizeOrAuto = bounded_or_word(int, 1, 10**6, "auto", "slices")
#: a number of helper processes that may be zero (0: the work stays in the calling process)
WorkerCountOrZero = bounded(int, 0, 4096, "workers")
