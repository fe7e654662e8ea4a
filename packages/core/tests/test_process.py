"""run_command: the one seam where programs start."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from opshelf.core import process
from opshelf.core.errors import CommandError
from opshelf.core.process import run_command
from opshelf.core.testing import fake_executable


def test_success_writes_logs(tmp_path: Path) -> None:
    result = run_command([sys.executable, "-c", "print('hello'); import sys; "
                          "print('warn', file=sys.stderr)"], tmp_path, log_name="hi")
    assert result.returncode == 0
    assert result.stdout().strip() == "hello"
    assert result.stderr().strip() == "warn"
    assert result.stdout_path == tmp_path / "hi.out"


def test_argv_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="argv list, not a shell string"):
        run_command("echo hi; rm -rf /", tmp_path)  # type: ignore[arg-type]


def test_missing_executable_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"cannot start 'no-such-program-xyz': not found") as info:
        run_command(["no-such-program-xyz", "-i", "in"], tmp_path)
    assert info.value.returncode is None


def test_nonzero_exit_carries_the_log_tail(tmp_path: Path) -> None:
    source = """
        import sys
        for i in range(100):
            print(f"line {i}")
        print("SCF did not converge", file=sys.stderr)
        sys.exit(3)
    """
    exe = fake_executable(tmp_path / "bin", "fake-dft", source)
    with pytest.raises(CommandError) as info:
        run_command([exe], tmp_path / "run", tail_lines=5)
    err = info.value
    assert err.returncode == 3
    assert "exit status 3" in str(err)
    assert "SCF did not converge" in err.log_tail
    assert "line 99" in err.log_tail and "line 94" not in err.log_tail  # only the tail
    assert "last lines of the log" in str(err)


def test_check_false_returns_the_code(tmp_path: Path) -> None:
    result = run_command([sys.executable, "-c", "raise SystemExit(4)"], tmp_path, check=False)
    assert result.returncode == 4


def test_env_is_laid_over(tmp_path: Path) -> None:
    result = run_command([sys.executable, "-c", "import os; print(os.environ['OPSHELF_X'], "
                          "'PATH' in os.environ)"], tmp_path, env={"OPSHELF_X": "42"})
    assert result.stdout().split() == ["42", "True"]


def test_timeout_kills_the_process_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "KILL_GRACE_S", 1.0)
    # The program starts a grandchild in its own process group member set and both ignore
    # SIGTERM: only the group-wide SIGKILL ends them.
    source = f"""
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([{sys.executable!r}, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
        with open("pids", "w") as fh:
            fh.write(f"{{os.getpid()}} {{child.pid}}")
        print("started", flush=True)
        time.sleep(60)
    """
    exe = fake_executable(tmp_path / "bin", "hang", source)
    start = time.monotonic()
    with pytest.raises(CommandError, match=r"ran past its timeout of 1.5 s") as info:
        run_command([exe], tmp_path / "run", timeout=1.5)
    assert info.value.timed_out
    assert time.monotonic() - start < 20
    pids = [int(p) for p in (tmp_path / "run" / "pids").read_text().split()]
    for pid in pids:
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        assert proc.status() == psutil.STATUS_ZOMBIE, f"process {pid} survived the timeout"
    assert "started" in info.value.log_tail
    assert os.getpgid(0) != pids[0]  # the program ran in its own session, not ours
