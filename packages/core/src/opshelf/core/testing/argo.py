"""Argo manifests in tests: validate against Argo's own Workflow JSON schema.

The schema (argo-workflows api/jsonschema/schema.json, pinned to one commit) ships with this
package: ``data/argo/workflow-schema.json``, its provenance and licence in the README.md next
to it. ``OPSHELF_ARGO_SCHEMA`` names another schema file to validate against instead (another
Argo release). Needs ``jsonschema`` (the test extras).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: Argo's Workflow schema as shipped with opshelf-core (see data/argo/README.md).
PINNED_SCHEMA = Path(__file__).resolve().parent / "data" / "argo" / "workflow-schema.json"


def argo_schema_path() -> Path:
    """The schema file used: ``$OPSHELF_ARGO_SCHEMA`` when set, else the pinned copy."""
    path = Path(os.environ.get("OPSHELF_ARGO_SCHEMA") or PINNED_SCHEMA)
    if not path.is_file():
        raise FileNotFoundError(f"Argo's workflow schema not found at {path}"
                                " (OPSHELF_ARGO_SCHEMA, or opshelf-core's package data)")
    return path


def argo_schema_errors(manifest: dict[str, Any]) -> list[str]:
    """Every violation of Argo's Workflow schema in `manifest` ('[path]: message')."""
    import jsonschema

    schema = {"$ref": "#/definitions/io.argoproj.workflow.v1alpha1.Workflow",
              "definitions": json.loads(argo_schema_path().read_text())["definitions"]}
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(manifest),
                    key=lambda e: list(e.absolute_path))
    return [f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors]
