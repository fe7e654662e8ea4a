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

The schema is Argo's, pinned in opshelf-core (opshelf.core.testing.argo_schema_path(): its
package data, or OPSHELF_ARGO_SCHEMA); a manifest is validated against its Workflow definition.
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
from opshelf.core.testing import argo_schema_path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*/config.yaml"))
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
    schema = json.loads(argo_schema_path().read_text())
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

    # a workflow that writes results (collect on the driver locally) ends with its results step
    from opshelf.core.local.runner import resolve_workflow
    from opshelf.core.workflow import WorkflowPlugin

    plugin = resolve_workflow(workflow)
    if type(plugin).results_inputs is not WorkflowPlugin.results_inputs:
        entry = next(t for t in manifest["spec"]["templates"]
                     if t["name"] == manifest["spec"]["entrypoint"])
        assert [s["name"] for s in entry["steps"][-1]] == ["results"], workflow


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


def validate(manifest: dict[str, Any], schema: dict[str, Any]) -> None:
    """No error against Argo's Workflow schema, read back through YAML as kubectl reads it."""
    manifest = yaml.safe_load(yaml.safe_dump(manifest, sort_keys=False))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(manifest),
                    key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}"
                                 for e in errors[:10])


def test_cli_settings_win_over_the_environment_and_the_upload_is_explained(
        tmp_path: Path, workflow_schema: dict[str, Any]) -> None:
    env = {**os.environ, "OPSHELF_ARGO_SERVICE_ACCOUNT": "from-env",
           "OPSHELF_ARGO_S3_SECRET": "env-s3", "OPSHELF_IMAGE_REGISTRY": "env.example.org/x",
           "OPSHELF_ARGO_ARTIFACT_REPOSITORY": "env-repos:env-key"}
    config = label_config(tmp_path / "config.yaml")
    proc = subprocess.run(
        [*OPSHELF, "export-argo", "label", str(config), "-o", "out/wf.yaml",
         "--service-account", "opshelf-runner", "--s3-secret", "team-s3",
         "--image-registry", "registry.example.org/sim", "--artifact-repository",
         "artifact-repositories:minio"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = yaml.safe_load((tmp_path / "out" / "wf.yaml").read_text())
    validate(manifest, workflow_schema)
    spec = manifest["spec"]
    assert spec["serviceAccountName"] == "opshelf-runner"
    assert spec["artifactRepositoryRef"] == {"configMap": "artifact-repositories", "key": "minio"}
    images = images_of(manifest)
    assert images and all(i.startswith("registry.example.org/sim/opshelf-") for i in images)
    secrets = {e["valueFrom"]["secretKeyRef"]["name"]
               for t in manifest["spec"]["templates"] if t.get("script") or t.get("container")
               for e in (t.get("script") or t.get("container"))["env"] if "valueFrom" in e}
    assert secrets == {"team-s3"}
    s3_secrets = {json.dumps(node) for node in _s3_locations(spec)}
    assert s3_secrets and all('"team-s3"' in s for s in s3_secrets)

    # what it printed: where the inputs went, every staged key, and where they must go
    staged = sorted(p.relative_to(tmp_path / "out" / "wf.inputs").as_posix()
                    for p in (tmp_path / "out" / "wf.inputs").rglob("*") if p.is_file())
    assert staged, "the label workflow uploads its frames"
    assert "staged" in proc.stderr and "out/wf.inputs/" in proc.stderr
    for key in staged:
        assert key in proc.stderr
    assert "mc cp --recursive out/wf.inputs/" in proc.stderr
    assert "argo submit" in proc.stderr

    # without flags, the environment variables apply
    proc = subprocess.run([*OPSHELF, "export-argo", "label", str(config), "-o", "env.yaml"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spec = yaml.safe_load((tmp_path / "env.yaml").read_text())["spec"]
    assert spec["serviceAccountName"] == "from-env"
    assert spec["artifactRepositoryRef"] == {"configMap": "env-repos", "key": "env-key"}


def _s3_locations(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("s3"), dict):
            found.append(node["s3"])
        for value in node.values():
            found += _s3_locations(value)
    elif isinstance(node, list):
        for value in node:
            found += _s3_locations(value)
    return found


@pytest.mark.parametrize(("flag", "value", "named"), [
    ("--service-account", "Not_A_Name", "service account"),
    ("--s3-secret", "bad/secret", "S3 secret"),
    ("--image-registry", "https://registry.example.org", "image registry"),
    ("--artifact-repository", "repos:bad key", "artifact repository"),
])
def test_a_bad_setting_is_refused_before_anything_is_written(
        tmp_path: Path, flag: str, value: str, named: str) -> None:
    config = label_config(tmp_path / "config.yaml")
    proc = subprocess.run([*OPSHELF, "export-argo", "label", str(config), "-o", "wf.yaml",
                           flag, value], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr  # a UserError
    assert named in proc.stderr and flag in proc.stderr and value in proc.stderr
    assert not (tmp_path / "wf.yaml").exists() and not (tmp_path / "wf.inputs").exists()


def test_a_dispatcher_step_exports_as_a_pod_that_submits_to_the_scheduler(
        tmp_path: Path, workflow_schema: dict[str, Any]) -> None:
    """dflow renders a dispatcher step in Argo mode as a script template in its
    `dispatcher_image` that writes the OP's script to a file and runs dpdispatcher, which
    stages it to `remote_root` and submits it (plugins/dispatcher.py, `render`)."""
    from opshelf.core.export_argo import ArgoSettings, build_manifest

    machine = {"batch_type": "Slurm", "context_type": "SSHContext",
               "remote_root": "/scratch/me/opshelf",
               "remote_profile": {"hostname": "hpc.example.org", "username": "me",
                                  "key_filename": "/etc/opshelf/ssh/id_ed25519"}}
    config = label_config(tmp_path / "config.yaml", {"run-task": {"executor": {
        "kind": "dispatcher", "machine": machine,
        "resources": {"cpu_per_node": 4, "queue_name": "compute"}, "poll_interval_s": 15}}})
    manifest = build_manifest("label", config, run_dir=tmp_path,
                              settings=ArgoSettings(artifact_repository="artifact-repositories",
                                                    ssh_secret="hpc-ssh"))
    validate(manifest, workflow_schema)
    assert manifest["spec"]["artifactRepositoryRef"] == {"configMap": "artifact-repositories"}

    templates = [t for t in manifest["spec"]["templates"] if t.get("script")]
    submitting = [t for t in templates if "from dpdispatcher import" in t["script"]["source"]]
    assert len(submitting) == 1, [t["name"] for t in templates]  # run-task only
    script = submitting[0]["script"]
    # the pod runs dpdispatcher in core's image (dflow's dispatcher_image), pinned
    assert script["image"] == f"{DEFAULT_REGISTRY}/opshelf-core:{metadata.version('opshelf-core')}"
    source = script["source"]
    # opshelf's loader (it resolves remote_profile's {env: NAME} in memory) builds the Machine
    machine_json = re.search(r"_opshelf_machine\(json\.loads\(r'(.*?)'\)\)", source)
    assert machine_json, "no dpdispatcher Machine in the step script"
    assert json.loads(machine_json[1])["remote_profile"]["hostname"] == "hpc.example.org"
    # opshelf's polling/retry loop replaces dflow's bare run_submission call
    assert "_opshelf_run_submission(submission" in source and "check_interval=15.0" in source
    assert "\nsubmission.run_submission(" not in source
    # the job runs the OP script with the cluster's python3, not this machine's interpreter
    assert "python3 script" in source and sys.executable not in source
    # the OP's own script travels inside the pod's script, for the job
    assert "RunEngineTask" in source
    # the SSH key comes from the Kubernetes secret, mounted where key_filename points,
    # readable by the image's user (group 10001, containers/runtime) and nobody else
    template = submitting[0]
    assert {"name": "opshelf-ssh", "secret": {"secretName": "hpc-ssh", "defaultMode": 0o440}} \
        in template["volumes"]
    assert {"name": "opshelf-ssh", "mountPath": "/etc/opshelf/ssh", "readOnly": True} \
        in script["volumeMounts"]
    assert template["securityContext"]["fsGroup"] == 10001
    others = [t for t in templates if t is not template]
    assert all("opshelf-ssh" not in json.dumps(t) for t in others)  # only where it is needed


def test_an_ssh_key_outside_the_mounted_secret_is_refused(tmp_path: Path) -> None:
    machine = {"batch_type": "Slurm", "context_type": "SSHContext", "remote_root": "/scratch",
               "remote_profile": {"hostname": "hpc.example.org", "username": "me",
                                  "key_filename": "~/.ssh/id_ed25519"}}
    config = label_config(tmp_path / "config.yaml", {"run-task": {"executor": {
        "kind": "dispatcher", "machine": machine}}})
    proc = subprocess.run([*OPSHELF, "export-argo", "label", str(config), "-o", "wf.yaml",
                           "--ssh-secret", "hpc-ssh"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "key_filename" in proc.stderr and "/etc/opshelf/ssh" in proc.stderr
    assert not (tmp_path / "wf.yaml").exists()


def test_an_exported_workflow_ends_with_its_results_step(
        tmp_path: Path, workflow_schema: dict[str, Any]) -> None:
    """No driver runs `collect` in a cluster: the exported workflow ends with core's
    WriteResults OP, in the workflow's image, on the artifacts the workflow names."""
    from opshelf.core.export_argo import build_manifest

    manifest = build_manifest("label", label_config(tmp_path / "config.yaml"), run_dir=tmp_path)
    validate(manifest, workflow_schema)
    templates = {t["name"]: t for t in manifest["spec"]["templates"]}
    entry = templates[manifest["spec"]["entrypoint"]]
    last = entry["steps"][-1]
    assert [s["name"] for s in last] == ["results"]  # after every other step
    (results,) = last
    sources = {a["name"]: a.get("from") for a in results["arguments"]["artifacts"]}
    # one dict-of-artifacts input: dflow names each entry dflow_inputs_<name>
    assert sources["dflow_inputs_data"] == "{{steps.collect-labels.outputs.artifacts.data}}"
    assert sources["dflow_inputs_summary"] == (
        "{{steps.collect-labels.outputs.artifacts.summary}}")
    parameters = {p["name"]: p["value"] for p in results["arguments"]["parameters"]}
    assert parameters["workflow"] == "label"
    assert json.loads(parameters["names"]) == ["data", "failures", "summary"]
    template = templates[results["template"]]
    # label is core's workflow: core's image, pinned
    assert template["script"]["image"] == (f"{DEFAULT_REGISTRY}/opshelf-core:"
                                           f"{metadata.version('opshelf-core')}")
    assert "WriteResults" in template["script"]["source"]
    assert [a["name"] for a in template["outputs"]["artifacts"]] == ["results"]
