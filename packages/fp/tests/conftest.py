"""Fixtures of opshelf-fp's tests: the real engine outputs and the engines they need."""

from __future__ import annotations

from pathlib import Path

import pytest
from fp_test_helpers import ENGINE_OUTPUTS, require_data

from opshelf.core.testing import require_engine


@pytest.fixture(scope="session")
def engine_outputs() -> Path:
    """The real outputs of tests/data/engine-outputs (see its README.md); a checkout without
    them is broken, not a reason to skip."""
    assert ENGINE_OUTPUTS.is_dir(), f"{ENGINE_OUTPUTS} missing: the checkout is incomplete"
    return ENGINE_OUTPUTS


@pytest.fixture
def cp2k_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    """cp2k and its basis/potential files; 1 thread (small tests, shared machine)."""
    require_engine("cp2k")
    require_data(Path("/usr/share/cp2k/BASIS_MOLOPT"), "cp2k-data")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def pw_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    """pw.x and Debian's pseudopotentials; 1 thread."""
    require_engine("pw.x")
    require_data(Path("/usr/share/espresso/pseudo/Si.pz-vbc.UPF"), "quantum-espresso-data")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
