"""pytest plugin of opshelf (registered through the `pytest11` entry point of opshelf-core).

- marker `@pytest.mark.engine("cp2k", ...)`: skip when an engine is missing, fail when
  OPSHELF_REQUIRE_ENGINES=1 (see `require_engine`);
- nothing skips under OPSHELF_REQUIRE_ENGINES=1: every skip (``pytest.skip``,
  ``importorskip`` in a test or at module level, ``skipif``/``skip`` markers, a fixture's
  skip) becomes a failure naming the test and the skip's reason; an xfail stays an xfail;
- marker `@pytest.mark.hardware("gpu")`: the one skip allowed under the flag, for hardware no
  package installs (CI machines have no GPU). The plugin itself skips such a test when the
  machine lacks it, with a reason naming the hardware; any other skip of that test fails;
- fixture `fake_bin`: a directory put first on PATH for `fake_executable`/`replay_program`.

Loaded by every pytest run in an environment holding opshelf-core: keep imports light.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from opshelf.core.testing import fakes
from opshelf.core.testing.engines import REQUIRE_ENV, engines_required, require_engine


def _missing_gpu() -> str | None:
    """None when an NVIDIA GPU is present (its device node), else why not. Only the
    hardware: a package the test needs (torch) missing is a failure, not a skip."""
    if any(Path("/dev").glob("nvidia[0-9]*")):
        return None
    return "no NVIDIA GPU on this machine (no /dev/nvidia<N>)"


#: hardware a test may need and no package installs: name -> why it is missing (None: present)
HARDWARE: dict[str, Callable[[], str | None]] = {"gpu": _missing_gpu}

#: the reason of the skip the plugin made for missing hardware (the one skip allowed under
#: OPSHELF_REQUIRE_ENGINES=1)
_HARDWARE_SKIP = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "engine(*names): needs these engines (executables, 'py:<module>' or opshelf engine "
        "names); skipped when missing unless OPSHELF_REQUIRE_ENGINES=1, then it fails")
    config.addinivalue_line(
        "markers",
        f"hardware(name): needs hardware no package installs ({', '.join(sorted(HARDWARE))}); "
        "skipped without it, also under OPSHELF_REQUIRE_ENGINES=1 (the only skip allowed)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers(name="hardware"):
        if len(marker.args) != 1 or marker.args[0] not in HARDWARE:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.hardware takes one of "
                                    f"{', '.join(sorted(HARDWARE))}, got {marker.args!r}")
        why = HARDWARE[marker.args[0]]()
        if why is not None:
            reason = f"needs hardware {marker.args[0]!r}: {why}"
            item.stash[_HARDWARE_SKIP] = reason
            pytest.skip(reason)
    for marker in item.iter_markers(name="engine"):
        if not marker.args:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.engine needs engine names")
        for name in marker.args:
            require_engine(name)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr: Any = report.longrepr
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def _refused_skip(nodeid: str, reason: str) -> str:
    return (f"{nodeid} skipped ({reason}), but {REQUIRE_ENV}=1: nothing may skip. Install "
            "what it needs; only @pytest.mark.hardware(...) may skip for missing hardware")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None],
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Outermost: sees the report after pytest's own xfail handling (`wasxfail`)."""
    report: pytest.TestReport = yield
    if report.skipped and not hasattr(report, "wasxfail") and engines_required():
        reason = _skip_reason(report)
        if item.stash.get(_HARDWARE_SKIP, None) != reason:
            report.outcome = "failed"
            report.longrepr = _refused_skip(item.nodeid, reason)
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(collector: pytest.Collector,
                               ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A module skipped at collection (`importorskip`, `pytest.skip(allow_module_level=True)`)
    fails under the flag like a skipped test."""
    report: pytest.CollectReport = yield
    if report.skipped and engines_required():
        report.outcome = "failed"
        report.longrepr = _refused_skip(collector.nodeid, _skip_reason(report))
    return report


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory first on PATH; `replay_program` puts its programs there by default."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(fakes, "_active_bin_dir", bin_dir)
    yield bin_dir
