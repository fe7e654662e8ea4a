"""The command of a local dflow step: hand the step script to opshelf's fork server.

dflow runs a step as ``<command> <stepdir>/script``. opshelf's patches make that command
``[sys.executable, "-S", "-I", <this file>, ...]``: an interpreter without site-packages
starts in ~0.02 s, and this client asks the fork server of the run (a process that has
already imported dflow and the workflow's OP modules) to fork a child that runs the
script. The child gets this process's stdin/stdout/stderr (passed over the unix socket),
working directory and environment, so dflow sees exactly what a ``python3 script`` would
have produced. The exit status travels back and becomes this process's exit status:
dflow's TransientError exits 1 (retried), FatalError 2.

When no fork server answers (dflow run directly, or the server died), the script runs in
a fresh interpreter instead: ``sys.executable -m opshelf.core.local.stepmain script``.

Every run leaves ``<stepdir>/launcher.json`` (exit status, timeout, how it ran): the
retry patch reads it, and a failure is recorded even when the log is empty.

Stdlib only, no site-packages: this file runs under ``python -S -I``.
Usage: launcher_client.py [--timeout SECONDS] SCRIPT
"""

import json
import os
import signal
import socket
import struct
import sys
import time

SOCKET_ENV = "OPSHELF_FORKSERVER"
#: "<pid>:<seconds>" while the run's fork server may still be importing: wait for it
STARTING_ENV = "OPSHELF_FORKSERVER_STARTING"
#: Seconds between SIGTERM and SIGKILL when a step runs past its timeout.
KILL_GRACE_S = 5.0
#: Exit status of a step killed for its timeout (as coreutils' timeout).
TIMEOUT_EXIT = 124
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _parse(argv):
    timeout = None
    args = list(argv)
    if len(args) >= 2 and args[0] == "--timeout":
        timeout = float(args[1])
        args = args[2:]
    if len(args) != 1:
        sys.stderr.write("usage: launcher_client.py [--timeout SECONDS] SCRIPT\n")
        sys.exit(64)
    return timeout, os.path.abspath(args[0])


def _exit_code(waitcode):
    # a child killed by signal N reports -N; a shell would say 128 + N
    return 128 - waitcode if waitcode < 0 else waitcode


class _LineReader:
    """Lines from a socket; a timeout leaves it usable (socket.makefile's reader is not)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def readline(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                line, self.buf = self.buf, b""
                return line
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"


class _Child:
    """What the client can do with the process that runs the script."""

    pid = None

    def kill(self, sig):
        if self.pid is not None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


def _forward_signals(child):
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, lambda signum, frame: child.kill(signum))


def _starting_server():
    """(pid, seconds) of a fork server still importing when the step began, else None."""
    value = os.environ.get(STARTING_ENV, "")
    pid, _, wait = value.partition(":")
    try:
        return int(pid), float(wait)
    except ValueError:
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _connect(sock_path):
    """A socket connected to the server. The driver starts the server while dflow walks
    the workflow: a step that comes before the server serves waits for it (while it lives,
    at most the start timeout)."""
    starting = _starting_server()
    deadline = time.monotonic() + (starting[1] if starting else 0.0)
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(sock_path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if starting is None or time.monotonic() > deadline or not _alive(starting[0]):
                raise
            time.sleep(0.02)
        except OSError:
            sock.close()
            raise


def _run_via_server(sock_path, script, timeout, record):
    """Returns the exit status, or None when no server answers (nothing ran)."""
    start = time.monotonic()
    try:
        sock = _connect(sock_path)
    except OSError as exc:
        record["server_wait_s"] = round(time.monotonic() - start, 4)
        record["server_error"] = f"cannot connect to {sock_path}: {exc}"
        return None
    record["server_wait_s"] = round(time.monotonic() - start, 4)
    payload = json.dumps({"script": script, "cwd": os.getcwd(),
                          "env": dict(os.environ)}).encode()
    socket.send_fds(sock, [struct.pack("!I", len(payload))], [0, 1, 2])
    sock.sendall(payload)
    reader = _LineReader(sock)
    line = reader.readline()
    if not line.startswith(b"P "):
        record["server_error"] = f"no child pid from the fork server: {line[:200]!r}"
        return None
    child = _Child()
    child.pid = int(line.split()[1])
    record["pid"] = child.pid
    _forward_signals(child)
    deadline = None if timeout is None else time.monotonic() + timeout
    killed_at = None
    while True:
        wait = None if deadline is None else max(0.001, deadline - time.monotonic())
        sock.settimeout(wait)
        try:
            line = reader.readline()
        except TimeoutError:
            # past the deadline: SIGTERM (dflow's script turns it into an exception,
            # run_command kills its program group), then SIGKILL after a grace period
            record["timed_out"] = True
            if killed_at is None:
                child.kill(signal.SIGTERM)
                killed_at = time.monotonic()
                deadline = killed_at + KILL_GRACE_S
            else:
                child.kill(signal.SIGKILL)
                deadline = None
            continue
        break
    if not line.startswith(b"X "):
        # the server died under us: do not leave the script running unsupervised
        child.kill(signal.SIGKILL)
        record["server_error"] = "fork server closed the connection before the exit status"
        sys.stderr.write(f"opshelf launcher: {record['server_error']} "
                         f"(step pid {child.pid} killed)\n")
        return 1
    return _exit_code(int(line.split()[1]))


def _run_in_subprocess(script, timeout, record):
    import subprocess

    child = _Child()
    proc = subprocess.Popen([sys.executable, "-m", "opshelf.core.local.stepmain", script])
    child.pid = proc.pid
    record["pid"] = proc.pid
    _forward_signals(child)
    try:
        return _exit_code(proc.wait(timeout=timeout))
    except subprocess.TimeoutExpired:
        record["timed_out"] = True
        child.kill(signal.SIGTERM)
        try:
            return _exit_code(proc.wait(timeout=KILL_GRACE_S))
        except subprocess.TimeoutExpired:
            child.kill(signal.SIGKILL)
            return _exit_code(proc.wait())


def main(argv):
    timeout, script = _parse(argv)
    start = time.monotonic()
    record = {"script": script, "timeout_s": timeout, "timed_out": False}
    code = None
    sock_path = os.environ.get(SOCKET_ENV)
    if sock_path:
        record["via"] = "forkserver"
        code = _run_via_server(sock_path, script, timeout, record)
        if code is None:
            sys.stderr.write(f"opshelf launcher: {record['server_error']}; "
                             "running the step in a new interpreter\n")
    if code is None:
        record["via"] = "subprocess"
        code = _run_in_subprocess(script, timeout, record)
    if record["timed_out"]:
        sys.stderr.write(f"opshelf launcher: step ran past its timeout of {timeout} s "
                         "and was killed\n")
        code = TIMEOUT_EXIT
    record["returncode"] = code
    record["wall_s"] = round(time.monotonic() - start, 4)
    path = os.path.join(os.path.dirname(script), "launcher.json")
    with open(path + ".tmp", "w") as fh:
        json.dump(record, fh)
    os.replace(path + ".tmp", path)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
