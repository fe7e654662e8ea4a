"""`opshelf export-argo` manifests: every example validates against Argo's Workflow schema,
every step runs its package's pinned image, and no credential is written anywhere.

Convention for examples (every workflow package adds its own under examples/):

    examples/<dir>/config.yaml

The workflow an example runs is named, first rule that applies:

1. a comment line ``# workflow: <name>`` in its config.yaml (<name> as `opshelf list` shows it);
2. the command in its comments, ``#   opshelf run <name> examples/<dir>/config.yaml``;
3. <dir> itself, starting with the workflow's name and "-": ``label-cu-emt`` runs ``label``.
 An example whose workflow is not installed fails here: the integration session
installs every package.

The schema is Argo's (../shared/argo/workflow-schema.json, or OPSHELF_ARGO_SCHEMA); a manifest
is validated against its Workflow definition.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from opshelf.core.images import DEFAULT_REGISTRY

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*/config.yaml"))
SCHEMA_PATH = Path(os.environ.get("OPSHELF_ARGO_SCHEMA")
                   or REPO.parent / "shared" / "argo" / "workflow-schema.json")
WORKFLOW_COMMENT = re.compile(r"^\s*#\s*workflow:\s*(?P<name>[A-Za-z0-9_.:-]+)\s*$", re.MULTILINE)
RUN_COMMENT = re.compile(r"^\s*#.*\bopshelf run (?P<name>[A-Za-z0-9_.:-]+)\s", re.MULTILINE)
IMAGE = re.compile(re.escape(DEFAULT_REGISTRY) + r"/(?P<dist>opshelf-[a-z0-9-]+):(?P<tag>[^:/@]+)$")
OPSHELF = [sys.executable, "-m", "opshelf.core.cli"]
# Distinctive stand-ins for real credentials: found anywhere, they leaked.
S3_ACCESS = "AKIAOPSHELFTEST7C1E"
S3_SECRET = "s3-secret-opshelf-test-5b9d2f"
SSH_PASSWORD = "ssh-password-opshelf-test-0a4e"


def installed_workflows() -> list[str]:
    return sorted(ep.name for ep in metadata.entry_points(group="opshelf.workflows"))


def workflow_of(config: Path) -> str:
    """The workflow an example runs (see the module doc for the convention)."""
    text = config.read_text()
    found = WORKFLOW_COMMENT.search(text) or RUN_COMMENT.search(text)
    if found:
        return found.group("name")
    directory = config.parent.name
    names = [n for n in installed_workflows() if directory.startswith(f"{n}-")]
    if not names:
        pytest.fail(f"{config.relative_to(REPO)}: no '# workflow: <name>' or "
                    "'# opshelf run <name> ...' line, and the folder "
                    f"name starts with no installed workflow name ({installed_workflows()})")
    return max(names, key=len)


@pytest.fixture(scope="module")
def workflow_schema() -> dict[str, Any]:
    if not SCHEMA_PATH.is_file():
        pytest.fail(f"Argo's workflow schema not found at {SCHEMA_PATH} (set OPSHELF_ARGO_SCHEMA)")
    schema = json.loads(SCHEMA_PATH.read_text())
    return {"$ref": "#/definitions/io.argoproj.workflow.v1alpha1.Workflow",
            "definitions": schema["definitions"]}


def images_of(manifest: dict[str, Any]) -> list[str]:
    templates = manifest["spec"]["templates"]
    return [(t.get("script") or t.get("container"))["image"] for t in templates
            if t.get("script") or t.get("container")]


def scripts_of(manifest: dict[str, Any]) -> list[str]:
    return [t["script"]["source"] for t in manifest["spec"]["templates"] if t.get("script")]


def test_there_are_examples() -> None:
    assert EXAMPLES, "examples/*/config.yaml: none found"


@pytest.mark.parametrize("config", EXAMPLES, ids=[c.parent.name for c in EXAMPLES])
def test_example_manifest_is_a_valid_argo_workflow(config: Path, tmp_path: Path,
                                                   workflow_schema: dict[str, Any]) -> None:
    from opshelf.core.export_argo import ARGO_API_VERSION, build_manifest

    workflow = workflow_of(config)
    manifest = build_manifest(workflow, config, run_dir=tmp_path)
    # Through YAML, as `opshelf export-argo` writes it and kubectl reads it.
    manifest = yaml.safe_load(yaml.safe_dump(manifest, sort_keys=False))
    errors = sorted(jsonschema.Draft7Validator(workflow_schema).iter_errors(manifest),
                    key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}"
                                 for e in errors[:10])
    assert (manifest["apiVersion"], manifest["kind"]) == (ARGO_API_VERSION, "Workflow")
    assert manifest["spec"].get("serviceAccountName") != "argo"  # dflow's hard-coded one

    images = images_of(manifest)
    assert images
    for image in images:
        match = IMAGE.match(image)
        assert match, f"{image}: not <registry>/<package>:<version>"
        assert match["tag"] == metadata.version(match["dist"]), image  # pinned, never latest
    for script in scripts_of(manifest):
        assert '"secret_key"' not in script and '"access_key"' not in script


def label_config(path: Path, steps: dict[str, Any] | None = None) -> Path:
    path.write_text(yaml.safe_dump({
        "generate": {"element": "Cu", "n_frames": 2, "supercell": [1, 1, 1]},
        "engine": {"name": "ase", "settings": {"calculator": "emt"}},
        "steps": steps or {}}))
    return path


def export(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DFLOW_S3_ACCESS_KEY": S3_ACCESS, "DFLOW_S3_SECRET_KEY": S3_SECRET}
    return subprocess.run([*OPSHELF, "export-argo", "label", str(config), "-o", "wf.yaml"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_no_credential_in_the_manifest_its_scripts_or_staged_inputs(tmp_path: Path) -> None:
    proc = export(tmp_path, label_config(tmp_path / "config.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = [tmp_path / "wf.yaml", *(p for p in (tmp_path / "wf.inputs").rglob("*")
                                       if p.is_file())]
    for path in written:
        data = path.read_bytes()
        if path.suffix == ".tgz":
            import tarfile

            with tarfile.open(path) as archive:
                data += b"".join(archive.extractfile(m).read() for m in archive.getmembers()
                                 if m.isfile())
        for secret in (S3_ACCESS, S3_SECRET):
            assert secret.encode() not in data, f"{secret} written into {path}"
    for secret in (S3_ACCESS, S3_SECRET):
        assert secret not in proc.stdout + proc.stderr  # nor in what it printed

    manifest = yaml.safe_load((tmp_path / "wf.yaml").read_text())
    containers = [t.get("script") or t.get("container") for t in manifest["spec"]["templates"]
                  if t.get("script") or t.get("container")]
    for container in containers:  # credentials come from the Kubernetes secret
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                if "valueFrom" in e}
        assert refs == {"DFLOW_S3_ACCESS_KEY": {"name": "opshelf-s3", "key": "accesskey"},
                        "DFLOW_S3_SECRET_KEY": {"name": "opshelf-s3", "key": "secretkey"}}
    assert (tmp_path / "wf.inputs").is_dir()  # the frames, staged for the artifact store


def test_a_credential_in_the_config_stops_the_export(tmp_path: Path) -> None:
    steps = {"run-task": {"executor": {
        "kind": "dispatcher",
        "machine": {"batch_type": "Slurm", "context_type": "SSHContext",
                    "remote_root": "/scratch/opshelf",
                    "remote_profile": {"hostname": "hpc.example.org", "username": "me",
                                       "password": SSH_PASSWORD}}}}}
    proc = export(tmp_path, label_config(tmp_path / "config.yaml", steps))
    assert proc.returncode == 2, proc.stdout + proc.stderr  # a UserError, before writing
    assert "remote_profile.password" in proc.stderr
    assert SSH_PASSWORD not in proc.stdout + proc.stderr
    assert not (tmp_path / "wf.yaml").exists()
