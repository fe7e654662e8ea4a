"""Checks on the files a command is asked to write, done before anything is written.

Every command that takes an output path (``-o``) calls `refuse_output_over_inputs` with the
files it reads, so that ``opshelf export-argo label cfg.yaml -o cfg.yaml`` (or ``-o`` naming a
symbolic or hard link to an input) stops with one line and exit status 2 instead of
replacing the user's input.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from opshelf.core.errors import ConfigError


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether `a` and `b` name one file: the same path once symbolic links are resolved, or
    (both existing) the same inode, which catches hard links. A missing path is no file."""
    first, second = Path(a), Path(b)
    if first.resolve() == second.resolve():
        return True
    try:
        return os.path.samefile(first, second)
    except FileNotFoundError:
        return False


def refuse_output_over_inputs(output: str | os.PathLike[str],
                              inputs: Iterable[str | os.PathLike[str]], *,
                              option: str = "-o/--output") -> None:
    """Raise ConfigError (one line: the CLI exits 2) when `output` is one of `inputs`, or a
    symbolic or hard link to one. Call it before writing anything."""
    for source in inputs:
        if same_file(output, source):
            how = "is" if os.path.abspath(output) == os.path.abspath(source) else "is a link to"
            raise ConfigError(f"{option} {output} {how} the input {source}: refusing to write "
                              "over an input (nothing written); choose another output path")
