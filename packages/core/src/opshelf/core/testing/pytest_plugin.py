"""pytest plugin of opshelf (registered through the `pytest11` entry point of opshelf-core).

- marker `@pytest.mark.engine("cp2k", ...)`: skip when an engine is missing, fail when
  OPSHELF_REQUIRE_ENGINES=1 (see `require_engine`);
- fixture `fake_bin`: a directory put first on PATH for `fake_executable`/`replay_program`.

Loaded by every pytest run in an environment holding opshelf-core: keep imports light.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from opshelf.core.testing import fakes
from opshelf.core.testing.engines import require_engine


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "engine(*names): needs these engines (executables, 'py:<module>' or opshelf engine "
        "names); skipped when missing unless OPSHELF_REQUIRE_ENGINES=1, then it fails")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers(name="engine"):
        if not marker.args:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.engine needs engine names")
        for name in marker.args:
            require_engine(name)


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory first on PATH; `replay_program` puts its programs there by default."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(fakes, "_active_bin_dir", bin_dir)
    yield bin_dir
