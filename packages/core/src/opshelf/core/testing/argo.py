"""Argo manifests in tests: validate against Argo's own Workflow JSON schema.

The schema (argo-workflows api/jsonschema/schema.json) is ``shared/argo/workflow-schema.json``
in a folder above the test file (``shared/`` beside the checkout), or the file that
OPSHELF_ARGO_SCHEMA names; without it the test skips (fails under OPSHELF_REQUIRE_ENGINES=1).
Needs ``jsonschema`` (the test extras).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from opshelf.core.testing.engines import skip_or_fail

SCHEMA_IN_SHARED = Path("shared", "argo", "workflow-schema.json")


def argo_schema_errors(manifest: dict[str, Any], near: str | os.PathLike[str]) -> list[str]:
    """Every violation of Argo's Workflow schema in `manifest` ('[path]: message'); the
    schema is looked for above `near` (the test file: core may be installed elsewhere)."""
    import jsonschema

    env = os.environ.get("OPSHELF_ARGO_SCHEMA")
    here = Path(near).resolve()
    candidates = [Path(env)] if env else [d / SCHEMA_IN_SHARED for d in here.parents]
    path = next((c for c in candidates if c.is_file()), candidates[0])
    if not path.is_file():
        skip_or_fail(f"Argo's workflow schema not found: {env or f'{SCHEMA_IN_SHARED} above {here}'}"
                     " (set OPSHELF_ARGO_SCHEMA)")
    schema = {"$ref": "#/definitions/io.argoproj.workflow.v1alpha1.Workflow",
              "definitions": json.loads(path.read_text())["definitions"]}
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(manifest),
                    key=lambda e: list(e.absolute_path))
    return [f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors]
