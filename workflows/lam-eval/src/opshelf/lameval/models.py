"""Large atomic models as `opshelf.models` entry points (callables `(**kwargs) -> ASE calculator`).

- `chgnet`: CHGNet (weights ship in the chgnet wheel: 0.3.0, 0.2.0, r2scan)
- `sevennet`: SevenNet (weights ship in the sevenn wheel: 7net-0, 7net-l3i5, ...)
- `deepmd`: a frozen DeePMD-kit model file (`model=` path)
- `emt` (core) as the baseline; any other ASE calculator by import path ("module:factory").

CPU by default, the GPU when torch sees one (`device="auto"`). Loading a model costs seconds
(torch, weights): the loaded model is cached per process, so the many calculators a props
or MD task creates share one model.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opshelf.core.errors import ConfigError, MissingInputError

if TYPE_CHECKING:
    from ase.calculators.calculator import BaseCalculator


def torch_device(device: str = "auto") -> str:
    """'cuda' when asked for 'auto' and torch sees a GPU, else 'cpu'; other names as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Within the block torch runs on `threads` CPU threads; None leaves torch alone (and
    unimported: an EMT-only run never pays for importing it)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_thread_count() -> int | None:
    """torch's CPU threads now, None when no model imported torch."""
    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())


def _require(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingInputError(f"model needs the python package {module!r}: "
                                f"pip install 'opshelf-lameval[{extra}]'")


@cache
def load_chgnet_model(model_name: str = "0.3.0", device: str = "auto") -> Any:
    """A CHGNet model from the weights in the chgnet wheel, cached per process."""
    _require("chgnet", "chgnet")
    from chgnet.model import CHGNet

    return CHGNet.load(model_name=model_name, use_device=torch_device(device), verbose=False)


def chgnet(model_name: str = "0.3.0", device: str = "auto", **kwargs: Any) -> BaseCalculator:
    """CHGNet as an ASE calculator (energy, forces, stress)."""
    from chgnet.model import CHGNetCalculator

    model = load_chgnet_model(model_name, device)
    return CHGNetCalculator(model=model, use_device=torch_device(device), **kwargs)


@cache
def _sevennet_calculator(model: str, device: str, modal: str | None) -> BaseCalculator:
    _require("sevenn", "sevennet")
    from sevenn.calculator import SevenNetCalculator

    try:
        return SevenNetCalculator(model, device=torch_device(device), modal=modal)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"model 'sevennet': cannot load {model!r}: {exc}") from None


def sevennet(model: str = "7net-0", device: str = "auto", modal: str | None = None
             ) -> BaseCalculator:
    """SevenNet as an ASE calculator; `model` is a pretrained name (7net-0, 7net-l3i5, ...)
    or a checkpoint path. One calculator per (model, device, modal) and process: it holds the
    model, and ASE recomputes whenever the atoms differ from its last call (sequential use)."""
    return _sevennet_calculator(str(model), device, modal)


def deepmd(model: str, **kwargs: Any) -> BaseCalculator:
    """A frozen DeePMD-kit model (`dp freeze` output) as an ASE calculator."""
    path = Path(model).expanduser()
    if not path.is_file():
        raise MissingInputError(f"model 'deepmd': model file not found: {model}")
    _require("deepmd", "deepmd")
    from deepmd.calculator import DP

    return DP(model=str(path), **kwargs)
