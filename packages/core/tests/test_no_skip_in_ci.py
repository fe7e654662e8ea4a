"""Nothing skips under OPSHELF_REQUIRE_ENGINES=1 (issue 19): the pytest plugin turns every
skip into a failure naming the test and the skip's reason; an xfail stays an xfail, and a
test marked `@pytest.mark.hardware("gpu")` may skip for the missing hardware only.

Each case runs in an inner pytest (pytester, in-process: the plugin loads there through its
pytest11 entry point), once without the flag (the control: the same tests skip) and once
with it."""

from __future__ import annotations

import pytest

from opshelf.core.testing import pytest_plugin

pytest_plugins = ["pytester"]

#: one test per way to skip (reasons distinctive, to find them in the output), the xfails,
#: and a plain test
SKIPS = """
import pytest

@pytest.mark.skipif(True, reason="skipif-reason-a1")
def test_skipif():
    pass

@pytest.mark.skip(reason="skip-mark-reason-a2")
def test_skip_mark():
    pass

def test_skip_inside():
    pytest.skip("inside-reason-b2")

def test_importorskip():
    pytest.importorskip("no_such_module_c3")

@pytest.fixture
def needs():
    pytest.skip("fixture-reason-d4")

def test_fixture_skip(needs):
    pass

@pytest.mark.xfail(reason="xfail-reason-e5")
def test_xfail():
    assert False

def test_xfail_imperative():
    pytest.xfail("imperative-f6")

@pytest.mark.xfail(run=False, reason="not run g7")
def test_xfail_not_run():
    pass

def test_passes():
    pass
"""


@pytest.fixture
def flag(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("OPSHELF_REQUIRE_ENGINES", raising=False)
    return monkeypatch


def test_every_skip_fails_under_the_flag_and_xfail_stays(pytester: pytest.Pytester,
                                                         flag: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_skips=SKIPS)
    pytester.runpytest().assert_outcomes(skipped=5, xfailed=3, passed=1)
    flag.setenv("OPSHELF_REQUIRE_ENGINES", "1")
    result = pytester.runpytest("-rfE")
    # a skip in setup (skipif, skip mark, a fixture's skip) is an error of the setup
    result.assert_outcomes(failed=2, errors=3, xfailed=3, passed=1)
    assert result.ret != 0
    out = result.stdout.str()
    for test, reason in [("test_skipif", "skipif-reason-a1"),
                         ("test_skip_mark", "skip-mark-reason-a2"),
                         ("test_skip_inside", "inside-reason-b2"),
                         ("test_importorskip", "could not import 'no_such_module_c3'"),
                         ("test_fixture_skip", "fixture-reason-d4")]:
        assert f"test_skips.py::{test} skipped ({reason}" in out, (test, out)
    assert "OPSHELF_REQUIRE_ENGINES=1: nothing may skip" in out


def test_a_module_skipped_at_collection_fails_under_the_flag(pytester: pytest.Pytester,
                                                             flag: pytest.MonkeyPatch) -> None:
    """alloy's slip of the last session: an importorskip at module level."""
    pytester.makepyfile(test_module_skip="""
        import pytest
        pytest.importorskip("no_such_module_h8")

        def test_never():
            pass
    """)
    pytester.runpytest().assert_outcomes(skipped=1)
    flag.setenv("OPSHELF_REQUIRE_ENGINES", "1")
    for args in ((), ("--co",)):  # collecting alone fails too
        result = pytester.runpytest(*args)
        result.assert_outcomes(errors=1)
        assert result.ret != 0
        assert "test_module_skip.py skipped (could not import 'no_such_module_h8'" in \
            result.stdout.str()


HARDWARE = """
import pytest

@pytest.mark.hardware("gpu")
def test_on_gpu():
    pytest.importorskip("no_such_gpu_library_k9")
"""


def test_missing_hardware_is_the_one_allowed_skip(pytester: pytest.Pytester,
                                                  flag: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_hw=HARDWARE)
    flag.setitem(pytest_plugin.HARDWARE, "gpu", lambda: "no GPU in this test")
    flag.setenv("OPSHELF_REQUIRE_ENGINES", "1")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    assert "needs hardware 'gpu': no GPU in this test" in result.stdout.str()
    # with the hardware present, the test runs, and its own skip is no hardware skip: it fails
    flag.setitem(pytest_plugin.HARDWARE, "gpu", lambda: None)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert "no_such_gpu_library_k9" in result.stdout.str()


def test_an_unknown_hardware_name_is_a_usage_error(pytester: pytest.Pytester,
                                                   flag: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.hardware("quantum-annealer")
        def test_bad():
            pass
    """)
    result = pytester.runpytest()
    assert result.ret != 0
    assert "@pytest.mark.hardware takes one of gpu" in result.stdout.str() + result.stderr.str()
