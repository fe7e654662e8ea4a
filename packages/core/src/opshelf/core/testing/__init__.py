"""The opshelf testing kit, applied by every OP package to its OPs and engines.

- `assert_op_conformance(op_class, good_inputs=..., bad_inputs=[BadInput(...)], workdir=...)`
- `fake_executable(directory, name, python_source)` and the `fake_bin` pytest fixture
- `replay_program(name, recorded_dir, check_inputs=...)`: replay real outputs of a program
- `require_engine(name)` and `@pytest.mark.engine(name)`: skip when missing, fail in CI
- `argo_schema_errors(manifest)`: violations of Argo's Workflow schema (a pinned copy ships
  with this package; `argo_schema_path()` names the file used)
- `run_package_tests(package_dir)`: a package copy's tests in a fresh pytest process
- `sigkill_after_steps(argv, run_path, n)` and `succeeded_step_stamps(run)`: crash a real run
  mid-way, then check that `opshelf resume` re-runs no finished step
- `run_results_step_locally(workflow, config_file, run_path)`: an exported workflow's results
  step, run here on a finished local run's artifacts

The pytest plugin (`opshelf.core.testing.pytest_plugin`) is registered through the `pytest11`
entry point. This module stays light: dflow loads only with the conformance checks.
"""

from __future__ import annotations

from typing import Any

from opshelf.core.testing.argo import argo_schema_errors, argo_schema_path
from opshelf.core.testing.engines import missing_engine_reason, require_engine, skip_or_fail
from opshelf.core.testing.fakes import fake_executable, replay_program
from opshelf.core.testing.packages import run_package_tests
from opshelf.core.testing.runs import (
    run_results_step_locally,
    sigkill_after_steps,
    succeeded_step_stamps,
)

__all__ = [
    "REMOVE",
    "BadInput",
    "ConformanceError",
    "ConformanceResult",
    "argo_schema_errors",
    "argo_schema_path",
    "assert_op_conformance",
    "fake_executable",
    "missing_engine_reason",
    "replay_program",
    "require_engine",
    "run_package_tests",
    "run_results_step_locally",
    "signature_problems",
    "sigkill_after_steps",
    "skip_or_fail",
    "succeeded_step_stamps",
]

_CONFORMANCE = {"REMOVE", "BadInput", "ConformanceError", "ConformanceResult",
                "assert_op_conformance", "signature_problems"}


def __getattr__(name: str) -> Any:
    if name in _CONFORMANCE:
        from opshelf.core.testing import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module 'opshelf.core.testing' has no attribute {name!r}")
