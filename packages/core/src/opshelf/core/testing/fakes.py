"""Fake and replayed programs for engine tests (no dflow, no pytest import).

- `fake_executable`: a small Python script on PATH standing in for a program.
- `replay_program` (after atomate2's run_fake_vasp): a fake program that, run by an engine
  in a task dir, checks the inputs the engine wrote and copies a recorded set of real output
  files there, so an engine's write/run/read path is tested on real outputs without the
  real program.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Set by the `fake_bin` pytest fixture: where `replay_program` puts programs by default.
_active_bin_dir: Path | None = None

#: Exit status of a replayed program whose inputs did not match the expectations.
INPUT_MISMATCH_EXIT = 3


def fake_executable(directory: str | os.PathLike[str], name: str, python_source: str) -> Path:
    """Write `python_source` as an executable `directory/name` run by this interpreter."""
    bin_dir = Path(directory)
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(python_source).lstrip("\n"))
    path.chmod(0o755)
    return path


_REPLAY_SOURCE = '''
"""Replay of recorded outputs (written by opshelf.core.testing.replay_program)."""
import json, re, shutil, sys
from pathlib import Path

CONFIG = json.loads({config!r})
cwd = Path.cwd()
problems = []
for name, expected in CONFIG["check_inputs"].items():
    written = cwd / name
    if not written.is_file():
        problems.append(f"input file {{name!r}} was not written in {{cwd}}")
        continue
    text = written.read_text(errors="replace")
    if isinstance(expected, dict):  # {{"same_as": reference file}}
        reference = Path(expected["same_as"]).read_text(errors="replace")
        if text.split() != reference.split():
            problems.append(f"input file {{name!r}} differs from {{expected['same_as']}}")
    else:
        for pattern in expected:
            if re.search(pattern, text, re.MULTILINE) is None:
                problems.append(f"input file {{name!r}}: no match for {{pattern!r}}")
if problems:
    print("replayed program: the inputs do not match the recording:", file=sys.stderr)
    for problem in problems:
        print("  - " + problem, file=sys.stderr)
    sys.exit({mismatch_exit})
recorded = Path(CONFIG["recorded_dir"])
for source in sorted(recorded.rglob("*")):
    if source.is_dir():
        continue
    target = cwd / source.relative_to(recorded)
    if target.exists() and not CONFIG["overwrite"]:
        continue  # an input the engine wrote wins over the recorded copy
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
with open(cwd / "opshelf-replay.json", "w") as fh:
    json.dump({{"argv": sys.argv, "recorded_dir": str(recorded)}}, fh)
if CONFIG["stdout_file"]:
    sys.stdout.write((recorded / CONFIG["stdout_file"]).read_text(errors="replace"))
sys.exit(CONFIG["exit_code"])
'''


def replay_program(
    name: str,
    recorded_dir: str | os.PathLike[str],
    *,
    check_inputs: Mapping[str, Sequence[str] | os.PathLike[str]] | None = None,
    directory: str | os.PathLike[str] | None = None,
    stdout_file: str | None = None,
    exit_code: int = 0,
    overwrite: bool = False,
) -> Path:
    """A fake `name` that copies the files of `recorded_dir` into its working directory.

    check_inputs: input file name -> a list of regular expressions that must each match in
        the file the engine wrote, or a path to a reference file that must hold the same
        whitespace-separated tokens. A mismatch exits with INPUT_MISMATCH_EXIT and names the
        file and pattern on stderr (the engine's CommandError carries it).
    directory: where to put the program; default: the `fake_bin` fixture's directory.
    stdout_file: a recorded file printed on stdout (programs that write their log there).
    exit_code: replay a failed run.
    overwrite: replace files that exist already (by default the engine's inputs are kept).
    """
    recorded = Path(recorded_dir).resolve()
    if not recorded.is_dir():
        raise FileNotFoundError(f"replay_program: recorded dir not found: {recorded}")
    if stdout_file is not None and not (recorded / stdout_file).is_file():
        raise FileNotFoundError(f"replay_program: {stdout_file!r} not in {recorded}")
    if directory is None:
        if _active_bin_dir is None:
            raise RuntimeError("replay_program: pass directory=, or use the fake_bin fixture")
        directory = _active_bin_dir
    checks: dict[str, object] = {}
    for input_name, expected in (check_inputs or {}).items():
        if isinstance(expected, (str, bytes)) or not isinstance(expected, (os.PathLike, Sequence)):
            raise TypeError(f"check_inputs[{input_name!r}]: a list of patterns or a path")
        if isinstance(expected, os.PathLike):
            reference = Path(expected).resolve()
            if not reference.is_file():
                raise FileNotFoundError(f"check_inputs[{input_name!r}]: {reference} not found")
            checks[input_name] = {"same_as": str(reference)}
        else:
            checks[input_name] = list(expected)
    config = json.dumps({
        "recorded_dir": str(recorded), "check_inputs": checks, "stdout_file": stdout_file,
        "exit_code": exit_code, "overwrite": overwrite,
    })
    source = _REPLAY_SOURCE.format(config=config, mismatch_exit=INPUT_MISMATCH_EXIT)
    return fake_executable(directory, name, source)
