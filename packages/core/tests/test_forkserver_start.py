"""The fork server starts while dflow begins the workflow: a step launched before the server
serves waits for its socket (while the server lives), and one whose server died falls back
at once to a fresh interpreter (launcher_client._connect)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from opshelf.core.local import launcher_client


def test_a_step_waits_for_a_server_still_importing(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "fs.sock")
    monkeypatch.setenv(launcher_client.STARTING_ENV, f"{os.getpid()}:30")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def serve_later() -> None:
        time.sleep(0.3)  # the server's imports
        server.bind(path)
        server.listen(1)

    thread = threading.Thread(target=serve_later)
    start = time.monotonic()
    thread.start()
    try:
        sock = launcher_client._connect(path)
        waited = time.monotonic() - start
        sock.close()
    finally:
        thread.join()
        server.close()
    assert waited >= 0.25  # it waited for the socket instead of giving up


def test_a_step_does_not_wait_for_a_dead_server(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    monkeypatch.setenv(launcher_client.STARTING_ENV, f"{dead.pid}:30")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError):
        launcher_client._connect(str(tmp_path / "never.sock"))
    assert time.monotonic() - start < 5  # not the 30 s start timeout
    monkeypatch.delenv(launcher_client.STARTING_ENV)
    with pytest.raises(FileNotFoundError):  # no server starting: no wait at all
        launcher_client._connect(str(tmp_path / "never.sock"))
