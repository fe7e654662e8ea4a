"""A fork server for local dflow steps: import once, fork per step.

A stock local step is a fresh ``python3 script`` that imports dflow (and, through it,
the argo, kubernetes and minio clients) before doing a few milliseconds of work:
0.4-0.9 s per step. ``run_locally`` starts one server per run. The server imports
dflow (with the cluster clients blocked, see ``blocker``), jsonpickle, opshelf.core and
the modules of the workflow's OPs, then waits on a unix socket. For each step the
launcher client (``launcher_client.py``) connects and passes its stdin/stdout/stderr
file descriptors, working directory, environment and script path; the server forks a
child that takes them over and runs the script as ``__main__`` with runpy. The server
sends the child's pid back at once (the client forwards SIGTERM/SIGINT to it) and its
exit status when it has been reaped.

The server is single-threaded (fork from a multi-threaded process is unsafe) and is
started with ``subprocess`` (fork + exec) from the driver, without a new session: it
and every step child stay in the driver's process group, so ``os.killpg`` of a run
leaves no orphans. It exits when its stdin (a pipe from the driver) closes or when its
parent dies.

Where a forked step differs from a fresh interpreter: modules imported by the server
are already imported (their import-time side effects ran once, in the server, with
the step's environment of the run); numpy's global random state is reseeded in each
child (Python's ``random`` reseeds itself after fork).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import time
import traceback

from opshelf.core.local import blocker
from opshelf.core.local.stepmain import prepare_sys_path

#: Always imported by the server: what every dflow Python step script imports.
BASE_PRELOAD: tuple[str, ...] = (
    "dflow",
    "dflow.python",
    "dflow.python.utils",
    "jsonpickle",
    "opshelf.core",
    "multiprocessing.pool",
)
READY_LINE = b"opshelf-forkserver ready\n"
#: A request must arrive within this many seconds of a connection.
REQUEST_TIMEOUT_S = 30.0


def _log(msg: str) -> None:
    sys.stderr.write(f"[forkserver {os.getpid()} {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def preload(modules: list[str]) -> None:
    """Import `modules`; a module that fails is logged (the step will fail on it later,
    with its own traceback in the step log)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            _log(f"preloading {name!r} failed; steps importing it will fail:\n"
                 + traceback.format_exc())


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        data = conn.recv(n)
        if not data:
            raise ConnectionError("client closed the connection mid-request")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def _exit_code_of(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)  # as the interpreter does for sys.exit("message")
    return 1


def _run_child(fds: list[int], request: dict, close_fds: list[int]) -> None:
    """In the forked child: become the step process, run its script, never return."""
    code = 70  # EX_SOFTWARE: the child could not even be set up
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in close_fds:
            try:
                os.close(fd)
            except OSError:
                pass  # already closed: nothing to release
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        script = request["script"]
        prepare_sys_path(script)
        sys.argv = [script]
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()  # fork copied the server's random state
        code = 0
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            code = _exit_code_of(exc)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = 128 + signal.SIGINT
        except BaseException:
            traceback.print_exc()
            code = 1
        # what interpreter shutdown would do: atexit handlers (logging, multiprocessing)
        atexit._run_exitfuncs()
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            os.write(2, b"opshelf forkserver: step child failed before its traceback\n")
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                os.write(2, b"opshelf forkserver: flushing the step's output failed\n")
        os._exit(code)


class ForkServer:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # whoever can connect runs code as us: owner only (the directory may be shared)
        umask = os.umask(0o177)
        try:
            self.listener.bind(socket_path)
        finally:
            os.umask(umask)
        self.listener.listen(128)
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket] = {}
        self.parent = os.getppid()
        self.stop_signal: int | None = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        for sig in (signal.SIGTERM, signal.SIGINT):
            # `opshelf stop` / Ctrl-C signal the whole run: shut down as when the driver
            # closes our stdin, giving the steps time to end (a dispatcher step cancels its
            # scheduler jobs); dying at once closed every step's launcher connection, and
            # each launcher then SIGKILLed its step
            signal.signal(sig, self._on_stop_signal)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.selector.register(0, selectors.EVENT_READ, "control")
        running = True
        while running:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    while True:
                        try:
                            if not os.read(self.wake_r, 4096):
                                break
                        except BlockingIOError:
                            break
                elif key.data == "control" and not os.read(0, 4096):
                    running = False  # the driver closed our stdin: the run is over
            self._reap()
            if self.stop_signal is not None:
                _log(f"{signal.Signals(self.stop_signal).name} received; stopping")
                running = False
            elif os.getppid() != self.parent:
                _log("the driver process is gone; stopping")
                running = False
        self._shutdown()

    def _on_stop_signal(self, signum: int, _frame: object) -> None:
        self.stop_signal = signum

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        fds: list[int] = []
        try:
            conn.settimeout(REQUEST_TIMEOUT_S)
            header, fds, _, _ = socket.recv_fds(conn, 4, 3)
            if len(header) != 4 or len(fds) != 3:
                raise ConnectionError(f"malformed request header {header!r}, {len(fds)} fds")
            (size,) = struct.unpack("!I", header)
            request = json.loads(_recv_exact(conn, size))
        except (OSError, ValueError) as exc:
            _log(f"bad request: {exc!r}")
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        close_in_child = [self.listener.fileno(), self.wake_r, self.wake_w, 0,
                          self.selector.fileno() if hasattr(self.selector, "fileno") else -1,
                          conn.fileno(), *(c.fileno() for c in self.children.values())]
        pid = os.fork()
        if pid == 0:
            _run_child(fds, request, [fd for fd in close_in_child if fd >= 0])
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        try:
            conn.sendall(b"P %d\n" % pid)
        except OSError as exc:
            _log(f"client of step pid {pid} went away: {exc!r}")

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            try:
                conn.sendall(b"X %d\n" % os.waitstatus_to_exitcode(status))
            except OSError as exc:
                _log(f"could not report the exit of step pid {pid}: {exc!r}")
            conn.close()

    def _shutdown(self) -> None:
        for pid in list(self.children):
            _log(f"stopping step pid {pid}, still running at shutdown")
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass  # it has just exited; reaped below
        deadline = time.monotonic() + 5.0
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in list(self.children):
            os.kill(pid, signal.SIGKILL)
        self._reap()
        self.listener.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass  # already removed by the driver


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("modules", nargs="*", help="modules to import before serving")
    args = parser.parse_args(argv)
    blocker.install()
    for entry in os.environ.get("OPSHELF_LOCAL_SYSPATH", "").split(os.pathsep):
        if entry and entry not in sys.path:
            sys.path.append(entry)
    preload([*BASE_PRELOAD, *args.modules])
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    if threads > 1:
        # a preloaded library started threads: a forked child inherits only the forking
        # thread, so a lock another thread held at fork time stays locked in the child
        _log(f"warning: {threads} threads after preloading; if steps hang, set "
             "OPSHELF_LOCAL_FORKSERVER=0 to run them in fresh interpreters")
    server = ForkServer(args.socket)
    # stdout only carries the ready line; afterwards it is the log, like stderr
    os.write(1, READY_LINE)
    os.dup2(2, 1)
    _log(f"serving on {args.socket}; preloaded {len(sys.modules)} modules")
    server.serve()
    # no interpreter teardown: it ran no step code, and tearing down ~2000 preloaded
    # modules took 0.8 s at load 6 (seen: over the driver's 10 s wait at load 17)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
