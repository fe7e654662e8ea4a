"""scripts/step_key_check.py (run by ``./dev lint``): a step key written by hand outside
opshelf.core.keys fails, a command-line option does not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "step_key_check.py"

#: (source line, what the check must say about it); each a way a key was or could be written
HAND_WRITTEN = [
    ('f"{block}--{step}"', "f-string"),
    ('f"{block}--run-fp-{{{{item}}}}"', "f-string"),
    ('f"prep--{step}"', "f-string"),
    ('key.split("--")', ".split('--')"),
    ('key.rsplit("--", 1)', ".rsplit('--')"),
    ('key.partition("--")', ".partition('--')"),
    ('"--".join([block, step])', "'--'.join"),
    ('block + "--" + step', "with +"),
    ('"block--" + step', "with +"),
    ('"%s--%s" % (block, step)', "with %"),
    ('"{}--{}".format(block, step)', "str.format"),
    (r're.match(r"^(?P<block>.+?)--(?P<step>.+)$", key)', "re.match"),
    (r're.compile(r"(\w+)--run")', "re.compile"),
]
#: texts with "--" that are no step key: options, a plain constant, a sum of constants
NOT_KEYS = [
    'f"--{name}"', 'f" --{name}={value}"', '"--" + option', 'x + " --flag"', '["--mpi", n]',
    '"--%s" % option', '"--{}".format(option)', '" ".join(["--a", "--b"])', '"a" + "--b"',
    r're.compile(r"^--(\w+)")', r're.match(r"(-x|--x)", text)', 'text.split("-")',
]


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root)],
                          capture_output=True, text=True, check=False)


def write_source(root: Path, lines: list[str], rel: str = "packages/a/src/opshelf/a/mod.py") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("import re\n" + "".join(f"v{i} = {line}\n" for i, line in enumerate(lines)))
    return path


@pytest.mark.parametrize(("line", "what"), HAND_WRITTEN)
def test_a_hand_written_key_fails(tmp_path: Path, line: str, what: str) -> None:
    write_source(tmp_path, [line])
    done = check(tmp_path)
    assert done.returncode == 1, done.stdout
    [problem] = done.stdout.splitlines()
    assert problem.startswith("packages/a/src/opshelf/a/mod.py:2: a step key ")
    assert problem.endswith(": use opshelf.core.keys.StepKey")
    assert what in problem


def test_options_and_constants_pass(tmp_path: Path) -> None:
    write_source(tmp_path, NOT_KEYS, "workflows/b/src/opshelf/b/mod.py")
    done = check(tmp_path)
    assert (done.returncode, done.stdout) == (0, "")


def test_only_core_keys_may_write_keys(tmp_path: Path) -> None:
    lines = [line for line, _ in HAND_WRITTEN]
    write_source(tmp_path, lines, "packages/core/src/opshelf/core/keys.py")
    write_source(tmp_path, lines, "packages/a/tests/test_mod.py")  # tests spell out keys
    assert check(tmp_path).returncode == 0
    write_source(tmp_path, lines, "packages/core/src/opshelf/core/other.py")
    done = check(tmp_path)
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == len(HAND_WRITTEN)


def test_the_repository_has_none() -> None:
    done = check(ROOT)
    assert (done.returncode, done.stdout) == (0, "")
