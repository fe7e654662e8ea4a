"""What every FP engine of this package shares on top of core's Engine."""

from __future__ import annotations

from collections.abc import Sequence

from opshelf.core.engine import Engine, Task
from opshelf.core.errors import ConfigError


class FpEngine(Engine):
    """`check` = `check_inputs` (task kind, files per element: no program needed, so it also
    runs where tasks are only prepared) + the executable (core's check)."""

    def check_inputs(self, elements: Sequence[str], task: Task | None = None) -> None:
        if task is not None:
            self.require_supported(task)

    def check(self, elements: Sequence[str], task: Task | None = None) -> None:
        self.check_inputs(elements, task)
        super().check(elements, task)

    def check_program(self) -> None:
        """Only the executable (core's check): where a prepared task dir runs, the files
        it needs (pseudopotentials, ...) were checked when it was written."""
        Engine.check(self, [], None)

    def require_supported(self, task: Task) -> None:
        if not self.supports(task):
            kinds = sorted(k.value for k in self.kinds)
            raise ConfigError(
                f"{self.name} engine: task kind {task.kind.value!r} is not supported; it runs {kinds}"
            )
