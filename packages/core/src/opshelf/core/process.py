"""The one place an opshelf package starts an external program.

Every engine (CP2K, pw.x, LAMMPS, dp, ...) goes through `run_command`, so tests can fake
or replay programs at exactly this seam, and every failure is reported the same way:
what ran, in which directory, its exit status, and the tail of its log.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from opshelf.core.errors import CommandError

if TYPE_CHECKING:
    import psutil

#: Seconds between SIGTERM and SIGKILL when a program runs past its timeout.
KILL_GRACE_S = 5.0


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    cwd: Path
    returncode: int
    stdout_path: Path
    stderr_path: Path
    wall_s: float

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def tail(path: Path, lines: int = 40) -> str:
    """Last `lines` lines of a text file ('' when it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def run_command(
    argv: Sequence[str | os.PathLike[str]],
    cwd: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    log_name: str = "command",
    stdin_path: str | os.PathLike[str] | None = None,
    check: bool = True,
    tail_lines: int = 40,
) -> CommandResult:
    """Run `argv` in `cwd`, stdout/stderr to `<cwd>/<log_name>.out|.err`.

    argv is a list: never a shell string, so user input cannot inject shell syntax.
    `env` is laid over the current environment. On timeout the program and every process
    it started are sent SIGTERM, then SIGKILL after KILL_GRACE_S, and a
    CommandError(timed_out=True) is raised. The program stays in the caller's process
    group on purpose: killing a run's group (opshelf resume after a crash) must reach it. With check=True a non-zero exit raises CommandError; with check=False the
    result carries the return code.
    """
    args = _argv_list(argv)
    workdir = Path(cwd)
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    out_path = workdir / f"{log_name}.out"
    err_path = workdir / f"{log_name}.err"
    exe = args[0]
    if os.sep not in exe and shutil.which(exe, path=full_env.get("PATH")) is None:
        raise CommandError(
            f"cannot start {exe!r}: not found on PATH (cwd {workdir})",
            argv=args, cwd=str(workdir), returncode=None, log_tail="",
        )
    start = time.monotonic()
    returncode = _run_logged(args, workdir, full_env, (out_path, err_path), stdin_path,
                             timeout, tail_lines)
    result = CommandResult(args, workdir, returncode, out_path, err_path, time.monotonic() - start)
    if check and returncode != 0:
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
        raise CommandError(
            f"{args[0]!r} failed ({how}) in {workdir}",
            argv=args, cwd=str(workdir), returncode=returncode,
            log_tail=_log_tail(out_path, err_path, tail_lines),
        )
    return result


def _argv_list(argv: Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(argv, (str, bytes)):
        raise TypeError("run_command takes an argv list, not a shell string")
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ValueError("run_command: empty argv")
    return args


def _run_logged(args: list[str], workdir: Path, env: dict[str, str], logs: tuple[Path, Path],
                stdin_path: str | os.PathLike[str] | None, timeout: float | None,
                tail_lines: int) -> int:
    """Start the program with its stdout/stderr to `logs` and wait for it: its return code.
    A timeout or an interruption kills it and everything it started."""
    out_path, err_path = logs
    stdin = open(stdin_path, "rb") if stdin_path is not None else subprocess.DEVNULL
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=out, stderr=err,
                                        stdin=stdin)
            except OSError as exc:
                raise CommandError(
                    f"cannot start {args[0]!r}: {exc}", argv=args, cwd=str(workdir),
                    returncode=None, log_tail="",
                ) from exc
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_tree(proc)
                raise CommandError(
                    f"{args[0]!r} ran past its timeout of {timeout} s in {workdir}",
                    argv=args, cwd=str(workdir), returncode=proc.returncode,
                    log_tail=_log_tail(out_path, err_path, tail_lines), timed_out=True,
                ) from None
            except BaseException:
                # Interrupted (Ctrl-C, SIGTERM turned into an exception): leave no orphan.
                _kill_tree(proc)
                raise
    finally:
        if stdin is not subprocess.DEVNULL:
            stdin.close()


def _log_tail(out_path: Path, err_path: Path, lines: int) -> str:
    parts = []
    for label, path in (("stderr", err_path), ("stdout", out_path)):
        text = tail(path, lines)
        if text.strip():
            parts.append(f"[{label} {path.name}]\n{text}")
    return "\n".join(parts)


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the program and its descendants, SIGKILL what is left after the grace time."""
    import psutil

    try:
        procs = [psutil.Process(proc.pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return
    stop_processes(procs)
    proc.wait()


def stop_processes(procs: list[psutil.Process], grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM `procs`, then SIGKILL those still alive after `grace_s`; wait for them."""
    import psutil

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass  # already gone: nothing to stop
        _, procs = psutil.wait_procs(procs, timeout=grace_s if sig == signal.SIGTERM else 2)
        if not procs:
            break
