"""Step keys: the one place that builds and parses them.

A dflow step key names a step's folder in a local run and its node in Argo. opshelf's keys
are deterministic, so resume, status, rerun and download find a step by its key:

    [<block>--]<step>[-<item>]      iter-000002--run-fp-000013   cu--emt--eos--post

- `block`: the id of the group the step belongs to (an iteration ``iter-000002``, a
  structure/interaction pair ``cu--emt``; a block may itself be a key, so ``cu--emt--eos``
  nests); at build time often a dflow parameter placeholder
  (``{{inputs.parameters.block_id}}``), which is why a block is kept as text; "" for a
  top-level step of a workflow without blocks (``run-task-000003``).
- `step`: the step's name (never holds ``--``).
- `item`: the slice of a fan-out, ``ITEM_DIGITS`` digits (dflow's ``argo_sequence(...,
  format=ITEM_FORMAT)``), or ``{{item}}`` in the template of the fan-out step.

No dflow import here: `opshelf status` parses keys without loading dflow.
"""

from __future__ import annotations

from dataclasses import dataclass

#: between a block and a step name
SEPARATOR = "--"
#: digits of a fan-out slice's item, and the printf format dflow's sequence writes it with
ITEM_DIGITS = 6
ITEM_FORMAT = f"%0{ITEM_DIGITS}d"
#: the item of a fan-out step's template: dflow substitutes each slice's item
FAN_OUT_ITEM = "{{item}}"
#: block id of iteration n of a loop (cl): ``iter-000002``
ITERATION_PREFIX = "iter-"


@dataclass(frozen=True)
class StepKey:
    """A step key: ``str(StepKey("iter-000002", "run-fp", "000013"))`` is
    ``iter-000002--run-fp-000013``; ``StepKey.parse`` reads it back."""

    block: str
    step: str
    item: str | None = None

    def __post_init__(self) -> None:
        # blocks arrive as dflow parameters too (their text is the placeholder)
        object.__setattr__(self, "block", str(self.block))
        if SEPARATOR in self.step or not self.step:
            raise ValueError(f"step name {self.step!r}: must be non-empty and hold no "
                             f"{SEPARATOR!r} (it separates block and step in a key)")

    def __str__(self) -> str:
        head = f"{self.block}{SEPARATOR}" if self.block else ""
        tail = "" if self.item is None else f"-{self.item}"
        return f"{head}{self.step}{tail}"

    @classmethod
    def fan_out(cls, block: object, step: str) -> StepKey:
        """The key of a fan-out step's template: one key per slice, ``<block>--<step>-{{item}}``."""
        return cls(str(block), step, FAN_OUT_ITEM)

    @classmethod
    def of(cls, block: object, step: str) -> StepKey:
        """The key of `step` in `block`, a text or a dflow parameter (its placeholder)."""
        return cls(str(block), step)

    def child(self, step: str) -> StepKey:
        """The key of `step` inside the block this key names (``cu--emt`` -> ``cu--emt--eos``)."""
        return StepKey(str(self), step)

    @classmethod
    def parse(cls, text: str) -> StepKey:
        """`text` read as a key (a top-level key, without ``--``, has block ""); ValueError
        when it is empty or has an empty step name."""
        block, _, rest = text.rpartition(SEPARATOR)
        step, dash, item = rest.rpartition("-")
        if dash and step and len(item) == ITEM_DIGITS and item.isdigit():
            return cls(block, step, item)
        if not rest:
            raise ValueError(f"{text!r} is no step key ([<block>{SEPARATOR}]<step>[-<item>])")
        return cls(block, rest)

    @property
    def iteration(self) -> int | None:
        """The loop iteration whose block this key is in (``iter-000002`` -> 2), else None."""
        number = self.block.removeprefix(ITERATION_PREFIX)
        if number == self.block or len(number) != ITEM_DIGITS or not number.isdigit():
            return None
        return int(number)


def block_glob(block: str) -> str:
    """A glob pattern matching the keys (step folders, Argo node names) of `block`'s steps."""
    return f"{block}{SEPARATOR}*"


def iteration_block(iteration: int) -> str:
    """The block id of loop iteration `iteration` (``iter-000002``)."""
    return f"{ITERATION_PREFIX}{iteration:0{ITEM_DIGITS}d}"


__all__ = ["FAN_OUT_ITEM", "ITEM_DIGITS", "ITEM_FORMAT", "ITERATION_PREFIX", "SEPARATOR",
           "StepKey", "block_glob", "iteration_block"]
