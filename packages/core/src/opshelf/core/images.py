"""Container images of opshelf packages: the one place their names are made.

Every package (and workflow) has one image, built from containers/<short-name>/Containerfile
and tagged with the package's version::

    <registry>/<distribution>:<version>      e.g. ghcr.io/opshelf/opshelf-fp:0.1.0

`<registry>` is, first that is set: the one given to ``use_registry`` (``opshelf export-argo
--image-registry``), the environment variable OPSHELF_IMAGE_REGISTRY (a private mirror),
``ghcr.io/opshelf``. A tag is never ``latest``: a manifest pins what it runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from importlib import metadata

from opshelf.core.errors import ConfigError

DEFAULT_REGISTRY = "ghcr.io/opshelf"
REGISTRY_ENV = "OPSHELF_IMAGE_REGISTRY"


_REGISTRY_OVERRIDE: ContextVar[str | None] = ContextVar("opshelf_image_registry", default=None)


def image_registry() -> str:
    """The registry images are named in (see the module doc for the order)."""
    override = (_REGISTRY_OVERRIDE.get() or "").strip().rstrip("/")
    return override or os.environ.get(REGISTRY_ENV, "").strip().rstrip("/") or DEFAULT_REGISTRY


@contextmanager
def use_registry(registry: str | None) -> Iterator[None]:
    """Name images in `registry` inside the block (None: no change)."""
    token = _REGISTRY_OVERRIDE.set(registry) if registry else None
    try:
        yield
    finally:
        if token is not None:
            _REGISTRY_OVERRIDE.reset(token)


def package_image(distribution: str, version: str, registry: str | None = None) -> str:
    """The image of `distribution` (e.g. "opshelf-fp") at `version` (e.g. "0.1.0")."""
    if not version or version == "latest":
        raise ConfigError(f"image of {distribution}: a pinned version is needed, not {version!r}")
    return f"{registry or image_registry()}/{distribution}:{version}"


@cache
def distribution_of_module(module: str) -> str:
    """The installed distribution that provides `module` (e.g. opshelf.fp.ops -> opshelf-fp).

    `opshelf` is a namespace shared by every package, so the first two components decide.
    """
    parts = module.split(".")
    top = ".".join(parts[:2]) if parts[0] == "opshelf" and len(parts) > 1 else parts[0]
    dists = list(metadata.distributions())
    for dist in dists:  # opshelf-fp provides opshelf.fp (editable installs list no files)
        if (dist.metadata["Name"] or "").replace("-", ".") == top:
            return dist.metadata["Name"]
    init = top.replace(".", "/") + "/__init__.py"
    for dist in dists:
        if any(path.as_posix() == init for path in dist.files or ()):
            return dist.metadata["Name"]
    raise ConfigError(f"no installed distribution provides {top!r}: cannot name its image")


def image_for(obj: object, registry: str | None = None) -> str:
    """The image of the package defining `obj` (a class or an instance), pinned to the
    installed version of that package."""
    cls = obj if isinstance(obj, type) else type(obj)
    dist = distribution_of_module(cls.__module__)
    return package_image(dist, metadata.version(dist), registry)


__all__ = ["DEFAULT_REGISTRY", "REGISTRY_ENV", "distribution_of_module", "image_for",
           "image_registry", "package_image", "use_registry"]
