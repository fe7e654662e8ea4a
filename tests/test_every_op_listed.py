"""`opshelf list` shows every OP and super-OP of every opshelf package installed here: each
dflow `OP` or `Steps` subclass defined in a package's OP modules (`opshelf.<pkg>.ops`, core's
`opshelf.core.ops.*`) is registered in the package's `opshelf.ops` entry points."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _op_modules() -> list[str]:
    """Every installed opshelf package's OP modules."""
    import opshelf

    mods = []
    for info in pkgutil.iter_modules(opshelf.__path__):
        if importlib.util.find_spec(f"opshelf.{info.name}.ops") is None:
            continue
        ops = importlib.import_module(f"opshelf.{info.name}.ops")
        mods.append(ops.__name__)
        if hasattr(ops, "__path__"):  # a package of OP modules (core)
            mods += [f"{ops.__name__}.{m.name}" for m in pkgutil.iter_modules(ops.__path__)]
    return mods


def test_every_op_class_is_listed() -> None:
    from dflow import Steps
    from dflow.python import OP

    defined = set()
    for name in _op_modules():
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (inspect.isclass(obj) and obj.__module__ == name and issubclass(obj, (OP, Steps))
                    and not inspect.isabstract(obj) and not attr.startswith("_")):
                defined.add(f"{name}:{attr}")
    assert len(defined) >= 20, defined  # core 4, fp 3, md 4, props 3, train 5, cl 3, lameval 2
    res = subprocess.run([sys.executable, "-m", "opshelf.core.cli", "list", "--json"],
                         capture_output=True, text=True, check=True)
    listed = {where.split(" ")[0] for where in json.loads(res.stdout)["ops"].values()}
    assert defined - listed == set(), "OPs missing from their package's opshelf.ops entry points"
