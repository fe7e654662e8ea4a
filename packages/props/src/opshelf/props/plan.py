"""The declaration every property driver runs: which property blocks, in which order.

`plan_blocks` turns the user's properties (and relax) into blocks; the serial
`compute_properties` runs them in-process, `opshelf.props.ops.PropertiesSteps` (the
super-OP that `build_props_workflow` and the alloy workflow compose) as dflow steps.
Both run each block as make -> run (batches) -> post with the functions of `ondisk` and
`run`. Pure: no dflow import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opshelf.props.registry import parse_params


@dataclass(frozen=True)
class Block:
    """One property of one structure: its typed params and its names."""

    #: the type, numbered when a type repeats: ``eos``, ``eos-2``, ``stacking_fault``
    label: str
    params: Any

    @property
    def key(self) -> str:
        """The block's step-key part and results folder: ``stacking-fault``, ``eos-2``."""
        return self.label.replace("_", "-")

    @property
    def is_relax(self) -> bool:
        return self.params.type == "relax"


def relax_params(relax: Any) -> Any:
    """The typed relax params of `relax` (a params model or a dict without its type)."""
    return parse_params({"type": "relax", **relax} if isinstance(relax, dict) else relax,
                        where="relax")


def plan_blocks(properties: Sequence[Any], relax: Any = None) -> list[Block]:
    """Relax first (when `relax` is not None), then every property in the given order;
    a repeated type is numbered (``eos``, ``eos-2``). Bad params: ConfigError naming them."""
    blocks = [Block("relax", relax_params(relax))] if relax is not None else []
    labels: set[str] = set()
    for index, raw in enumerate(properties):
        params = parse_params(raw, where=f"properties[{index}]")
        label, count = params.type, 2
        while label in labels:
            label = f"{params.type}-{count}"
            count += 1
        labels.add(label)
        blocks.append(Block(label, params))
    return blocks
