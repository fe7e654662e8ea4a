"""Fail when a package changed without a CHANGELOG.md entry.

    python scripts/changelog_check.py [--base REF] [--root DIR]

Compares the working tree (commits, staged and unstaged changes, new untracked files) with the
merge-base of REF and HEAD. REF defaults to ``origin/main``, then ``main``. A package is every
``packages/*`` or ``workflows/*`` folder with a pyproject.toml; a change to any of its files
except those under ``tests/`` needs a change to its ``CHANGELOG.md``. Exit status 1 names each
package that lacks one; 2 when the base cannot be found.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

DEFAULT_BASES = ("origin/main", "main")
#: paths inside a package whose changes need no changelog entry
EXEMPT_PARTS = ("tests/",)


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def merge_base(root: Path, base: str | None) -> str:
    """The merge-base of `base` (default: origin/main, else main) and HEAD."""
    for ref in [base] if base else DEFAULT_BASES:
        try:
            _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except RuntimeError:
            continue
        return _git(root, "merge-base", ref, "HEAD").strip()
    tried = base or " or ".join(DEFAULT_BASES)
    raise LookupError(f"base ref {tried} not found; pass --base REF (a branch, tag or commit)")


def changed_files(root: Path, base_commit: str) -> set[str]:
    """Paths (relative to the repository root) changed since `base_commit`, untracked included."""
    tracked = _git(root, "diff", "--name-only", base_commit).splitlines()
    untracked = _git(root, "ls-files", "--others", "--exclude-standard").splitlines()
    return {path for path in tracked + untracked if path}


def package_dirs(root: Path) -> list[str]:
    return sorted(p.parent.relative_to(root).as_posix()
                  for group in ("packages", "workflows")
                  for p in (root / group).glob("*/pyproject.toml"))


def missing_entries(packages: list[str], changed: set[str]) -> dict[str, list[str]]:
    """package -> its changed files, for every package changed without its CHANGELOG.md."""
    missing: dict[str, list[str]] = {}
    for package in packages:
        prefix = package + "/"
        files = sorted(path for path in changed if path.startswith(prefix)
                       and not path[len(prefix):].startswith(EXEMPT_PARTS))
        if files and f"{prefix}CHANGELOG.md" not in files:
            missing[package] = files
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="ref to compare with (default: origin/main, else main)")
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    args = parser.parse_args(argv)
    root = Path(args.root)
    try:
        base_commit = merge_base(root, args.base)
    except LookupError as exc:
        print(f"changelog: error: {exc}", file=sys.stderr)
        return 2
    packages = package_dirs(root)
    missing = missing_entries(packages, changed_files(root, base_commit))
    for package, files in missing.items():
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        print(f"changelog: {package} changed ({shown}) but {package}/CHANGELOG.md did not: "
              "add an entry under its top heading", file=sys.stderr)
    if missing:
        return 1
    print(f"changelog: ok ({len(packages)} packages checked against {base_commit[:12]})",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
