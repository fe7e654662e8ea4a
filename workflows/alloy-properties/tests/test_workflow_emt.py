"""The alloy workflow end to end in local mode through the `opshelf` CLI, on core's ASE
engine with EMT (no external program): every block's result lands in results.json, the
values agree with the same quantities computed directly with ASE, and the report is one
self-contained file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ase.build import bulk

from opshelf.core.cli import main

CONFIG = {
    "structures": [
        {"name": "cu", "generate": {"element": "Cu", "prototype": "fcc",
                                    "lattice_constant_A": 3.6}},
        {"name": "cu3au", "generate": {"elements": ["Cu", "Au"], "prototype": "L1_2"},
         "properties": ["eos"]},
    ],
    "interactions": [{"name": "emt", "calculator": "emt"}],
    "relax": {"relax_cell": True},
    "properties": [{"type": "eos", "n_points": 7},
                   {"type": "elastic"},
                   {"type": "vacancy", "supercell": [2, 2, 2]},
                   {"type": "stacking_fault", "n_points": 6, "n_layers": 6},
                   {"type": "phonon", "supercell": [2, 2, 2], "band_points_per_segment": 5,
                    "mesh": [4, 4, 4]},
                   # fails at run time in the engine: a shifted cell's relax cannot reach
                   # 1e-6 eV/A in one step (ASE engine: TaskFailed "did not converge")
                   {"type": "stacking_fault", "n_points": 4, "n_layers": 6, "relax": True,
                    "max_steps": 1, "fmax_eV_per_A": 1e-6}],
}
FAILING_BLOCK = "stacking-fault-2"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("alloy-emt")
    (tmp / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    code = main(["run", "alloy", str(tmp / "config.yaml"), "--runs-dir", str(tmp / "runs"),
                 "--name", "emt", "--no-progress"])
    assert code == 0, (tmp / "runs" / "emt" / "driver.log").read_text()[-3000:]
    return tmp / "runs" / "emt"


@pytest.fixture(scope="module")
def results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results" / "results.json").read_text())


def emt_equilibrium() -> tuple[float, float]:
    """(a0 A, E0 eV/atom) of EMT Cu, relaxed directly with ASE."""
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = EMT()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-5)
    return atoms.cell.lengths()[0], atoms.get_potential_energy() / len(atoms)


def test_every_block_but_the_failing_one_has_a_result(results: dict[str, Any]) -> None:
    assert sorted(results["results"]["cu"]["emt"]) == [
        "elastic", "eos", "phonon", "relax", "stacking-fault", "vacancy"]
    # structure.properties limits what is computed for cu3au
    assert sorted(results["results"]["cu3au"]["emt"]) == ["eos", "relax"]
    assert results["structures"]["cu3au"]["formula"] == "AuCu3"


def test_failed_property_is_recorded_with_its_error(results: dict[str, Any], run_dir: Path
                                                    ) -> None:
    (failure,) = results["failures"]
    assert (failure["structure"], failure["interaction"], failure["property"]) == (
        "cu", "emt", FAILING_BLOCK)
    assert "did not converge within max_steps=1" in failure["reason"]
    report = (run_dir / "results" / "report.html").read_text()
    assert "Failures (1)" in report and FAILING_BLOCK in report
    assert "did not converge within max_steps=1" in report


def test_values_agree_with_ase(results: dict[str, Any]) -> None:
    a0, e0 = emt_equilibrium()
    cu = results["results"]["cu"]["emt"]
    # the workflow's relax stops at 1e-3 eV/A (props default): a within 1e-3 A
    assert cu["relax"]["lattice_constant_A"] == pytest.approx(a0, abs=1e-3)
    assert cu["eos"]["e0_eV_per_atom"] == pytest.approx(e0, abs=1e-4)
    # B from the EOS and from the elastic constants describe the same curvature (1 GPa)
    assert cu["elastic"]["bulk_modulus_vrh_GPa"] == pytest.approx(
        cu["eos"]["bulk_modulus_GPa"], abs=1.0)
    assert cu["phonon"]["has_imaginary_modes"] is False


def test_report_is_self_contained(run_dir: Path) -> None:
    text = (run_dir / "results" / "report.html").read_text()
    # EOS (2 structures), stacking fault and phonon plots, inline
    assert text.count("<svg") == 4
    assert "Elastic constants" in text and "Point defects" in text
    # the GSFE title follows the result's `relaxed` flag (EMT relaxes normal to the plane)
    assert "stacking-fault energy (relaxed normal to the plane)" in text
    # nothing fetched from elsewhere: no src/href to a file or a URL
    assert not re.search(r"(src|href)\s*=\s*['\"](?!#)", text)
    # `opshelf report` writes it again from results.json
    assert main(["report", str(run_dir)]) == 0


def relative_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_results_step_of_an_argo_run_writes_what_collect_wrote(run_dir: Path) -> None:
    """The step an exported (Argo) alloy run ends with: core's WriteResults on every
    block's results folder (the pair Steps' outputs) and the input structures. Run here on
    the finished run's artifacts (resume: every finished step is reused, only it runs), it
    writes the results/ that the local driver's collect wrote; only a failed block's reason
    differs (the Argo step has no logs to quote: it says where they are)."""
    from opshelf.core.testing import run_results_step_locally

    written = run_results_step_locally("alloy", run_dir.parent.parent / "config.yaml", run_dir)
    collected = run_dir / "results"
    assert relative_files(written) == relative_files(collected)
    for path in collected.rglob("*.json"):
        if path.name != "results.json":  # each block's own result, copied as it is
            assert json.loads((written / path.relative_to(collected)).read_text()) == \
                json.loads(path.read_text()), path
    argo, local = (json.loads((d / "results.json").read_text()) for d in (written, collected))
    (argo_failure,) = argo.pop("failures")
    (local_failure,) = local.pop("failures")
    assert argo == local
    assert argo_failure.pop("reason").startswith(f"no results: step cu--emt--{FAILING_BLOCK} ")
    local_failure.pop("reason")
    assert argo_failure == local_failure
    assert "Failures (1)" in (written / "report.html").read_text()
