"""scripts/changelog_check.py on a temporary git repository with two packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "changelog_check.py"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def check(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(repo), *args],
                          capture_output=True, text=True, check=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main: packages/a and workflows/b, each with src, tests and CHANGELOG.md; then a branch."""
    repo = tmp_path / "repo"
    for package in ("packages/a", "workflows/b"):
        for name in ("pyproject.toml", "CHANGELOG.md", "src/mod.py", "tests/test_mod.py"):
            path = repo / package / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"# {package} {name}\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "feature")
    return repo


def commit(repo: Path, message: str) -> None:
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", message)


def test_no_change_passes(repo: Path) -> None:
    done = check(repo)  # no origin/main here: falls back to main
    assert done.returncode == 0, done.stderr
    assert "2 packages checked" in done.stderr


def test_a_source_change_needs_its_changelog(repo: Path) -> None:
    (repo / "packages/a/src/mod.py").write_text("x = 1\n")
    commit(repo, "change a")
    done = check(repo)
    assert done.returncode == 1
    assert "packages/a changed (packages/a/src/mod.py)" in done.stderr
    assert "workflows/b" not in done.stderr
    (repo / "packages/a/CHANGELOG.md").write_text("# a\n- x is 1\n")  # uncommitted counts
    assert check(repo).returncode == 0


def test_untracked_files_count_and_tests_are_exempt(repo: Path) -> None:
    (repo / "workflows/b/tests/test_more.py").write_text("def test(): pass\n")
    assert check(repo).returncode == 0  # tests only: no entry needed
    (repo / "workflows/b/src/new.py").write_text("y = 2\n")  # untracked source file
    done = check(repo)
    assert done.returncode == 1
    assert "workflows/b changed (workflows/b/src/new.py)" in done.stderr


def test_the_base_is_the_merge_base(repo: Path) -> None:
    # main moves on after the branch point; the branch itself changes nothing
    git(repo, "checkout", "-q", "main")
    (repo / "packages/a/src/mod.py").write_text("z = 3\n")
    commit(repo, "main moves")
    git(repo, "checkout", "-q", "feature")
    assert check(repo).returncode == 0
    assert check(repo, "--base", "main").returncode == 0
    done = check(repo, "--base", "nope")
    assert done.returncode == 2
    assert "base ref nope not found" in done.stderr
