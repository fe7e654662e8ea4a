"""Moved to `opshelf.core.step_outputs` (a workflow module importing it made an import
cycle); this name stays for code written against it."""

from opshelf.core.step_outputs import StepOutputs, artifact_items, local_step_outputs

__all__ = ["StepOutputs", "artifact_items", "local_step_outputs"]
