"""How `dp train` and `dp freeze` are launched: one process for both where it can be.

Each `dp` call imports its framework first (TensorFlow or PyTorch with DeePMD-kit's compiled
ops: seconds, more on a busy machine), and for a tiny model that start-up is most of a training
task. When `dp` is a Python console script (pip, conda), both calls run in one process of
its interpreter through DeePMD-kit's own entry point, `deepmd.main.main(argv)` (its backends
reset their session state around each call for exactly this use), so the import is paid
once. Any other `dp` (a wrapper script, `srun dp`, a container command) runs as two calls.

The one process's argv keeps the two command lines readable, joined by `&&`:
`python -c <driver> --tf train input.json -l train.log && --tf freeze -o frozen_model.pb`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from opshelf.core.process import run_command
from opshelf.train.deepmd import DpProfile

#: joins the command lines of the calls one driver process makes
SEPARATOR = "&&"

#: the driver: each `&&`-separated argv through DeePMD-kit's entry point, in order; the first
#: failure ends the process with its traceback (non-zero exit)
DRIVER = (
    "import sys\n"
    "from deepmd.main import main\n"
    "calls, call = [], []\n"
    f"for arg in sys.argv[1:]:\n"
    f"    if arg == {SEPARATOR!r}:\n"
    "        calls.append(call)\n"
    "        call = []\n"
    "    else:\n"
    "        call.append(arg)\n"
    "calls.append(call)\n"
    "for argv in calls:\n"
    "    print('opshelf: dp', ' '.join(argv), file=sys.stderr, flush=True)\n"
    "    main(argv)\n"
)


def python_of(command: Sequence[str]) -> str | None:
    """The interpreter of a `dp` that is a Python console script (its `#!` line), else None
    (a command with arguments, a binary, a shell wrapper)."""
    if len(command) != 1:
        return None
    exe = command[0] if os.sep in command[0] else shutil.which(command[0])
    if exe is None or not Path(exe).is_file():
        return None
    with open(exe, "rb") as handle:
        first = handle.readline(512).decode(errors="replace").strip()
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if words and Path(words[0]).name == "env" and len(words) > 1:
        words = words[1:]
        found = shutil.which(words[0])
        words[0] = found or words[0]
    if len(words) != 1 or not Path(words[0]).name.startswith("python"):
        return None
    return words[0]


def run_dp_calls(profile: DpProfile, calls: Sequence[Sequence[str]], work_dir: Path,
                 log_name: str) -> str:
    """Run the `dp` command lines `calls` (each without the command and backend flag) in
    `work_dir`: in one process when `profile.one_process` and dp is a Python script, else one
    process each (logs `dp-<its subcommand>`). Returns how they ran: 'one process' or
    'one process per call'."""
    env = profile.environment()
    python = python_of(profile.command) if profile.one_process else None
    if python is not None:
        argv = [python, "-c", DRIVER]
        for i, call in enumerate(calls):
            argv += [SEPARATOR] * bool(i) + [profile.backend.flag, *call]
        run_command(argv, work_dir, env=env, timeout=profile.timeout_s, log_name=log_name)
        return "one process"
    for call in calls:
        run_command(profile.argv(*call), work_dir, env=env, timeout=profile.timeout_s,
                    log_name=f"dp-{call[0]}")
    return "one process per call"
