"""`opshelf export-argo`: an Argo Workflow manifest of a workflow, written without a server.

The workflow is built with `BuildContext(mode="argo")`; its Python OP templates must be
made with `upload_dflow=False` (opshelf's `dflow_build` does that in argo mode), otherwise
dflow uploads packages to an object store while the Step is built. dflow's `to_dict()`
lacks `apiVersion` and `kind`; they are added here so the output is a complete manifest.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.workflow import BuildContext

ARGO_API_VERSION = "argoproj.io/v1alpha1"


def build_manifest(workflow_ref: str, config_path: str | Path, *,
                   name: str | None = None, run_dir: Path | None = None) -> dict[str, Any]:
    """The Argo Workflow manifest (a dict) for `workflow_ref` with the given config."""
    from opshelf.core.local.runner import resolve_workflow

    plugin = resolve_workflow(workflow_ref)
    config_file = Path(config_path)
    if not config_file.is_file():
        raise MissingInputError(f"config file not found: {config_file}")
    config = plugin.load_config(config_file)
    wf_name = name or plugin.name
    if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", wf_name):
        raise ConfigError(f"invalid workflow name {wf_name!r}: lowercase letters, digits, '-'")
    ctx = BuildContext(run_dir=(run_dir or Path.cwd()).resolve(),
                       config_dir=config_file.resolve().parent, mode="argo", workflow_id=wf_name)
    plugin.check(config, ctx)
    workflow = plugin.build(config, ctx)
    body = workflow.to_dict()
    # Put the identifying keys first, as kubectl and Argo write them.
    manifest: dict[str, Any] = {"apiVersion": ARGO_API_VERSION, "kind": "Workflow"}
    manifest.update({k: v for k, v in body.items() if k not in ("apiVersion", "kind")})
    return manifest


def export_argo(workflow_ref: str, config_path: str | Path, output: str | Path, *,
                name: str | None = None) -> Path:
    """Write the manifest as YAML to `output`; returns its path."""
    out = Path(output)
    manifest = build_manifest(workflow_ref, config_path, name=name, run_dir=out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return out
