"""The testing kit on itself: conformance catches bad OPs, fakes and replays work,
require_engine skips or fails."""

# dflow compares artifact signs with typing.List[...]; keep typing's generics.

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from dflow.python import OP, OPIO, Artifact, OPIOSign, Parameter

from opshelf.core.errors import CommandError
from opshelf.core.process import run_command
from opshelf.core.testing import (
    BadInput,
    ConformanceError,
    assert_op_conformance,
    fake_executable,
    missing_engine_reason,
    replay_program,
    require_engine,
)
from opshelf.core.testing.fakes import INPUT_MISMATCH_EXIT

pytest_plugins = ["pytester"]

#: real outputs of a pw.x run (dpdata test data; provenance and licence: tests/data/README.md)
QE_OUTPUTS = Path(__file__).parent / "data" / "engine-outputs" / "qe"


# -- OPs under test (module level: dflow's local steps import them by name) ------------------
class ScaleNumbers(OP):
    """Good: reads numbers from a file, writes them scaled."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({"numbers": Artifact(Path), "factor": Parameter(float)})

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"scaled": Artifact(Path), "total": Parameter(float)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        if ip["factor"] <= 0:
            raise ValueError(f"factor must be positive, got {ip['factor']}")
        values = [float(x) * ip["factor"] for x in Path(ip["numbers"]).read_text().split()]
        out = Path("scaled.txt")
        out.write_text(" ".join(map(str, values)))
        return OPIO({"scaled": out, "total": sum(values)})


class UntypedSigns(OP):
    """Bad: a bare type and an untyped parameter in its signs."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({"x": int, "y": Parameter(Any)})

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"z": Parameter(int)})

    def execute(self, ip: OPIO) -> OPIO:  # also not wrapped in exec_sign_check
        return OPIO({"z": ip["x"]})


class ForgetsAnOutput(OP):
    """Bad: declares `report` but never writes the file it names."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({"n": Parameter(int)})

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"report": Artifact(Path), "n2": Parameter(int)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        return OPIO({"report": Path("never-written.json"), "n2": ip["n"] * 2})


@pytest.fixture
def numbers(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.txt"
    path.write_text("1 2 3.5")
    return path


def test_a_good_op_conforms(tmp_path: Path, numbers: Path) -> None:
    result = assert_op_conformance(
        ScaleNumbers, good_inputs={"numbers": numbers, "factor": 2.0},
        bad_inputs=[BadInput({"factor": -1.0}, match=r"factor must be positive"),
                    BadInput({"factor": "two"}, match=r"factor", why="not a number")],
        workdir=tmp_path / "conf")
    assert result.parameters["total"] == pytest.approx(13.0)  # 2 * (1 + 2 + 3.5)
    scaled = next(result.artifacts["scaled"].rglob("scaled.txt"))
    assert scaled.read_text().split() == ["2.0", "4.0", "7.0"]


def test_untyped_signs_fail(tmp_path: Path) -> None:
    with pytest.raises(ConformanceError) as info:
        assert_op_conformance(UntypedSigns, good_inputs={"x": 1, "y": 2}, workdir=tmp_path)
    message = str(info.value)
    assert "input 'x': a bare" in message
    assert "input 'y': no type" in message
    assert "exec_sign_check" in message


def test_a_missing_output_fails(tmp_path: Path) -> None:
    with pytest.raises(ConformanceError, match=r"output artifact 'report' was not produced"):
        assert_op_conformance(ForgetsAnOutput, good_inputs={"n": 2}, workdir=tmp_path)


def test_an_accepted_bad_input_fails(tmp_path: Path, numbers: Path) -> None:
    with pytest.raises(ConformanceError, match=r"bad input #0 \(zero\): accepted"):
        assert_op_conformance(
            ScaleNumbers, good_inputs={"numbers": numbers, "factor": 2.0},
            bad_inputs=[BadInput({"factor": 1e-9}, match="positive", why="zero")],
            workdir=tmp_path)


def test_a_vague_rejection_fails(tmp_path: Path, numbers: Path) -> None:
    with pytest.raises(ConformanceError, match=r"does not match 'numbers file missing'"):
        assert_op_conformance(
            ScaleNumbers, good_inputs={"numbers": numbers, "factor": 2.0},
            bad_inputs=[BadInput({"factor": -3.0}, match="numbers file missing")],
            workdir=tmp_path)


# -- fake and replayed programs ------------------------------------------------------------
def test_fake_executable_on_path(fake_bin: Path, tmp_path: Path) -> None:
    fake_executable(fake_bin, "pw.x", "import sys; print('fake pw', sys.argv[1:])")
    assert shutil.which("pw.x") == str(fake_bin / "pw.x")
    result = run_command(["pw.x", "-in", "pw.in"], tmp_path)
    assert result.stdout().strip() == "fake pw ['-in', 'pw.in']"


def test_replay_copies_real_outputs_and_checks_inputs(fake_bin: Path, tmp_path: Path) -> None:
    import dpdata

    case = QE_OUTPUTS / "scf-ch4"
    replay_program("pw.x", case, check_inputs={"pw.in": [r"calculation\s*=\s*'scf'"]})
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "pw.in").write_text("&control\n calculation = 'scf'\n/\n")
    run_command(["pw.x", "-in", "pw.in"], task_dir)
    copied = sorted(p.name for p in task_dir.iterdir())
    assert {p.name for p in case.iterdir() if p.is_file()} <= set(copied)
    assert (task_dir / "pw.in").read_text().startswith("&control")  # the input is kept
    assert json.loads((task_dir / "opshelf-replay.json").read_text())["argv"][1:] == ["-in", "pw.in"]
    # the replayed output parses like the real one (tests/data/README.md: -219.74426130639802 eV)
    system = dpdata.LabeledSystem(str(task_dir / "01.out"), fmt="qe/pw/scf")
    assert system.get_nframes() == 1
    assert system["energies"][0] == pytest.approx(-219.74426130639802, rel=1e-6)


def test_replay_rejects_unexpected_inputs(fake_bin: Path, tmp_path: Path) -> None:
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    (recorded / "out.log").write_text("energy = -1.0\n")
    reference = tmp_path / "ref.in"
    reference.write_text("a = 1\nb = 2\n")
    replay_program("prog", recorded, check_inputs={"in.txt": [r"^cutoff\s*=\s*50$"],
                                                   "ref.in": reference})
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "in.txt").write_text("cutoff = 30\n")
    (task_dir / "ref.in").write_text("a = 1\n  b = 2")  # same tokens: accepted
    with pytest.raises(CommandError) as info:
        run_command(["prog"], task_dir)
    assert info.value.returncode == INPUT_MISMATCH_EXIT
    assert "input file 'in.txt': no match for '^cutoff\\\\s*=\\\\s*50$'" in info.value.log_tail
    assert "ref.in" not in info.value.log_tail
    assert not (task_dir / "out.log").exists()  # nothing copied on a mismatch


def test_replay_of_a_failed_run_and_stdout(fake_bin: Path, tmp_path: Path) -> None:
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    (recorded / "log.txt").write_text("convergence NOT achieved\n")
    replay_program("prog", recorded, stdout_file="log.txt", exit_code=1)
    with pytest.raises(CommandError, match=r"exit status 1") as info:
        run_command(["prog"], tmp_path / "task")
    assert "convergence NOT achieved" in info.value.log_tail


def test_replay_needs_a_directory_outside_the_fixture(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"fake_bin fixture"):
        replay_program("prog", tmp_path)


# -- require_engine and the engine marker --------------------------------------------------
def test_missing_engine_reasons() -> None:
    assert missing_engine_reason("python3") is None or shutil.which("python3") is None
    assert missing_engine_reason("py:json") is None
    assert "not installed" in (missing_engine_reason("py:no_such_module_xyz") or "")
    assert missing_engine_reason("ase") is None  # in-process engine
    assert "not found on PATH" in (missing_engine_reason("no-such-engine-xyz") or "")


def test_missing_engine_reasons_of_engine_specs() -> None:
    from opshelf.core.errors import ConfigError

    emt = {"name": "ase", "settings": {"calculator": "emt"}}
    assert missing_engine_reason(emt, ["Cu"]) is None
    # the engine's own check runs, with the test's elements: EMT has no uranium
    assert "'U'" in (missing_engine_reason(emt, ["U"]) or "")
    assert "not installed" in (missing_engine_reason({"name": "no-such-engine-xyz"}) or "")
    with pytest.raises(ConfigError, match=r"calculatr.*calculator"):  # a test's own bug
        missing_engine_reason({"name": "ase", "settings": {"calculatr": "emt"}})


class _EngineNeedingSettings:
    """Stands in for an engine class whose settings have required keys (lammps)."""

    program = "no-such-program-xyz"

    def __init__(self) -> None:
        from opshelf.core.errors import ConfigError

        raise ConfigError("engine 'needy' settings: missing required key 'potential'")

    def default_command(self) -> list[str]:
        return [self.program]


def test_engine_name_needing_settings_checks_its_program(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from opshelf.core.testing import engines

    class EntryPoint:
        @staticmethod
        def load() -> type:
            return _EngineNeedingSettings

    monkeypatch.setattr(engines, "_engine_entry_points", lambda: {"needy": EntryPoint()})
    reason = missing_engine_reason("needy")
    assert reason is not None and "'no-such-program-xyz' not found on PATH" in reason
    monkeypatch.setattr(_EngineNeedingSettings, "program", shutil.which("python3") or "sh")
    assert missing_engine_reason("needy") is None


def test_require_engine_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSHELF_REQUIRE_ENGINES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-engine-xyz"):
        require_engine("no-such-engine-xyz")
    monkeypatch.setenv("OPSHELF_REQUIRE_ENGINES", "1")
    with pytest.raises(pytest.fail.Exception, match="a missing engine is a failure"):
        require_engine("no-such-engine-xyz")
    require_engine("ase")  # present: neither


def test_engine_marker_through_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.engine("no-such-engine-xyz")
        def test_needs_missing():
            pass

        @pytest.mark.engine("ase", "py:json")
        def test_needs_present():
            pass
    """)
    env = {k: v for k, v in os.environ.items() if k != "OPSHELF_REQUIRE_ENGINES"}
    os.environ.pop("OPSHELF_REQUIRE_ENGINES", None)
    try:
        # the plugin loads through its pytest11 entry point: no -p needed
        pytester.runpytest().assert_outcomes(passed=1, skipped=1)
        os.environ["OPSHELF_REQUIRE_ENGINES"] = "1"
        # failing in setup: pytest counts it as an error, and the run fails
        result = pytester.runpytest()
        result.assert_outcomes(passed=1, errors=1)
        assert result.ret != 0
    finally:
        os.environ.clear()
        os.environ.update(env)
