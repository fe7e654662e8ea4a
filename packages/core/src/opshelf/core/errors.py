"""Error types shared by every opshelf package.

`UserError` and its subclasses are mistakes a user can make (bad config, missing file,
unknown step name). The CLI prints them as one clear message and exits 2, without a
traceback. Everything else is a bug or an environment failure and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: printed as one message, exit code 2."""


class ConfigError(UserError):
    """Invalid configuration: names the key, where it is, and what was expected."""


class MissingInputError(UserError):
    """A file, executable, pseudopotential or basis set that is needed is not there."""


class CommandError(RuntimeError):
    """An external program failed (non-zero exit, timeout, or could not start).

    Carries what ran, where, and the tail of its log so that a failed task can be
    recorded with its reason instead of being swallowed.
    """

    def __init__(
        self,
        message: str,
        *,
        argv: list[str],
        cwd: str,
        returncode: int | None,
        log_tail: str,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.argv = argv
        self.cwd = cwd
        self.returncode = returncode
        self.log_tail = log_tail
        self.timed_out = timed_out

    @property
    def message(self) -> str:
        """What failed, without the log tail."""
        return super().__str__()

    def __str__(self) -> str:  # one block a human can read in a log
        head = self.message
        return f"{head}\n--- last lines of the log ---\n{self.log_tail}" if self.log_tail else head
