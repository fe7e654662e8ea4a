"""Fail on a step key written by hand outside opshelf.core.keys (the ``lint`` session runs this).

    python scripts/step_key_check.py [--root DIR]

Step keys (``<block>--<step>[-<item>]``) are built and parsed by ``opshelf.core.keys.StepKey``
only. In the sources of every package (``packages/*/src``, ``workflows/*/src``) except
``core/keys.py`` this flags a text that glues a value to ``--`` (an f-string, ``+``, ``%``,
``str.format`` or ``"--".join``) and a split or ``re`` pattern at ``--``. ``"--{name}"`` and
``" --{name}"`` open a command-line option and pass. Tests may spell out expected keys. Exit
status 1 lists each hit as ``path:line: what``.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

#: the one module that may write step-key text (``<block>--<step>``); see its docstring
STEP_KEY_MODULE = Path("packages/core/src/opshelf/core/keys.py")
_KEY_SEPARATOR = "--"
_KEY_SPLITTERS = frozenset({"split", "rsplit", "partition", "rpartition"})
_REGEX_FUNCTIONS = frozenset({"compile", "match", "fullmatch", "search", "findall", "finditer",
                              "sub", "subn", "split"})
# "--" right after a pattern piece ("(.+)--", "\w--"): a key regex; "^--x" / " --x": an option
_KEY_IN_REGEX = re.compile(r"[^\s^\-\[(|]--")
# "--" beside a %- or {}-placeholder ("--%s" alone: an option): a key through % or str.format
_KEY_IN_TEMPLATE = re.compile(r"(%[-+ #0-9.]*[sdrif]|})--|\S--(%|{)")


def _str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _glues_key(parts: Sequence[ast.AST]) -> bool:
    """Whether a literal among the pieces of an f-string or a ``+`` chain glues a value to
    ``--``: "--step" after a value or "block--" before one ("--{name}" and " --{name}" open a
    command-line option, not a key)."""
    for i, part in enumerate(parts):
        text = _str(part)
        if text is None:
            continue
        before = i > 0 and _str(parts[i - 1]) is None and text.startswith(_KEY_SEPARATOR)
        head = text.removesuffix(_KEY_SEPARATOR)
        after = (i + 1 < len(parts) and _str(parts[i + 1]) is None
                 and text.endswith(_KEY_SEPARATOR) and head != "" and not head[-1].isspace())
        if before or after:
            return True
    return False


def _added(node: ast.AST) -> list[ast.AST]:
    """The operands of a ``a + b + c`` chain, left to right."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [*_added(node.left), *_added(node.right)]
    return [node]


def _key_call(node: ast.Call) -> str | None:
    """What a call does with ``--`` if it splits, joins or matches a key."""
    if not isinstance(node.func, ast.Attribute):
        return None
    name, owner = node.func.attr, node.func.value
    first = _str(node.args[0]) if node.args else None
    if name in _KEY_SPLITTERS and first == _KEY_SEPARATOR:
        return f"a step key parsed with .{name}({_KEY_SEPARATOR!r})"
    if name == "join" and _str(owner) == _KEY_SEPARATOR:
        return f"a step key assembled with {_KEY_SEPARATOR!r}.join"
    if name == "format" and _KEY_IN_TEMPLATE.search(_str(owner) or ""):
        return "a step key assembled with str.format"
    if (name in _REGEX_FUNCTIONS and isinstance(owner, ast.Name) and owner.id == "re"
            and _KEY_IN_REGEX.search(first or "")):
        return f"a step key parsed with re.{name}"
    return None


def _hand_written_keys(tree: ast.AST) -> Iterable[tuple[int, str]]:
    """(line, what) of every text that glues a value to ``--`` (an f-string, ``+``, ``%``,
    str.format or ``"--".join``) and every split or regex of a text at ``--``: step keys are
    built and parsed by core's StepKey only."""
    inner_sums: set[int] = set()  # ast.walk meets a + b + c before its inner a + b
    for node in ast.walk(tree):
        what = None
        is_sum = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)
        if is_sum:
            inner_sums.add(id(node.left))
        if isinstance(node, ast.JoinedStr) and _glues_key(node.values):
            what = "a step key assembled in an f-string"
        elif is_sum and id(node) not in inner_sums and _glues_key(_added(node)):
            what = "a step key assembled with +"
        elif (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod)
              and _KEY_IN_TEMPLATE.search(_str(node.left) or "")):
            what = "a step key assembled with %"
        elif isinstance(node, ast.Call):
            what = _key_call(node)
        if what:
            yield node.lineno, what


def step_key_problems(root: Path) -> list[str]:
    """``path:line: what`` of every hand-written step key in the packages' sources."""
    problems = []
    sources = [*root.glob("packages/*/src"), *root.glob("workflows/*/src")]
    for source in sorted(path for src in sources for path in src.rglob("*.py")):
        rel = source.relative_to(root)
        if rel == STEP_KEY_MODULE:
            continue
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(rel))
        problems += [f"{rel.as_posix()}:{line}: {what}: use opshelf.core.keys.StepKey"
                     for line, what in _hand_written_keys(tree)]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    problems = step_key_problems(args.root.resolve())
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} hand-written step key(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
