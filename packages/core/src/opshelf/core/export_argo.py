"""`opshelf export-argo`: an Argo Workflow manifest of a workflow, written without a server.

What the manifest holds, and why:

- ``apiVersion`` and ``kind`` (dflow's ``to_dict()`` lacks them).
- Every step in its package's image pinned to that package's version (``opshelf.core.images``;
  a step's ``executor: {kind: argo, image: ...}`` overrides it).
- Input files (frames, ...) are not uploaded at export time: dflow's ``upload_artifact``
  writes them through a storage client that stages them under ``<manifest>.inputs/`` by their
  S3 keys. Copy that folder to the root of the artifact repository's bucket before submitting
  (docs/cluster.md). So nothing needs a running MinIO or Argo server.
- No credential. dflow embeds its ``config`` and ``s3_config`` (S3 secret key included) as JSON
  into every step script: those keys are removed, and every step gets the S3 credentials as
  environment variables from a Kubernetes secret instead (``env[].valueFrom.secretKeyRef``;
  secret ``opshelf-s3`` with keys ``accesskey``/``secretkey`` unless OPSHELF_ARGO_S3_SECRET
  names another). Artifacts move through the namespace's artifact repository, whose
  credentials Argo reads from its own secret. The export fails, naming the place, if a
  secret value from the config, dflow's config or the environment is still in the manifest.
- ``serviceAccountName``: dflow hard-codes ``argo``; here it is OPSHELF_ARGO_SERVICE_ACCOUNT
  when set, else left out (the namespace's default service account).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.images import package_image
from opshelf.core.workflow import BuildContext

ARGO_API_VERSION = "argoproj.io/v1alpha1"
S3_SECRET_ENV = "OPSHELF_ARGO_S3_SECRET"
SERVICE_ACCOUNT_ENV = "OPSHELF_ARGO_SERVICE_ACCOUNT"
DEFAULT_S3_SECRET = "opshelf-s3"
#: environment variable of a step <- key in the S3 secret (dflow reads these variables)
S3_SECRET_KEYS = {"DFLOW_S3_ACCESS_KEY": "accesskey", "DFLOW_S3_SECRET_KEY": "secretkey"}
#: keys of dflow's config / s3_config never written into a step script
SENSITIVE_KEYS = frozenset({"access_key", "secret_key", "token", "password", "storage_client",
                            "private_key", "ticket"})
#: config keys whose string values are credentials (dispatcher remote_profile, ...)
_SECRET_NAME = re.compile(r"(password|passwd|secret|token|access_?key|private_?key|ticket)",
                          re.IGNORECASE)
# dflow's own placeholders (config.py defaults): not secrets, and common words
_DFLOW_DEFAULTS = {"admin", "password"}
_EMBEDDED = re.compile(r"(?P<head>(?:s3_)?config\.update\(jsonpickle\.loads\(r''')"
                       r"(?P<json>.*?)(?P<tail>'''\)\))", re.DOTALL)


class StagedInputs:
    """A dflow storage client that copies "uploads" into a local folder, by S3 key.

    Used while a workflow is built for export: ``upload_artifact`` then needs no server.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys: list[str] = []

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ConfigError(f"input artifact key {key!r} leaves the staging folder")
        return path

    def upload(self, key: str, path: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        self.keys.append(key)

    def download(self, key: str, path: str) -> None:
        shutil.copyfile(self._path(key), path)

    def list(self, prefix: str, recursive: bool = False) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return []
        found = base.rglob("*") if recursive else base.iterdir()
        return [p.relative_to(self.root).as_posix() for p in found if p.is_file()]

    def copy(self, src: str, dst: str) -> None:
        self.upload(dst, str(self._path(src)))

    def to_dict(self) -> dict[str, Any]:
        """What dflow writes about the store next to an artifact key: no credential."""
        from dflow import s3_config

        return {name: s3_config.get(name) for name in
                ("endpoint", "bucket_name", "secure", "prefix", "repo_key")}

    def get_md5(self, key: str) -> str:
        import hashlib

        return hashlib.md5(self._path(key).read_bytes()).hexdigest()


@contextmanager
def _argo_build(staging: Path) -> Iterator[StagedInputs]:
    """dflow set up to build for a cluster: default (Argo) mode, uploads staged locally.
    dflow's global config is restored afterwards (tests build in one process)."""
    from dflow import config, s3_config

    saved_config, saved_s3 = dict(config), dict(s3_config)
    client = StagedInputs(staging)
    config["mode"] = "default"
    # dflow's helper steps (slice init, dispatcher) default to python:3.8: use core's image
    core_image = package_image("opshelf-core", metadata.version("opshelf-core"))
    config["util_image"] = config["dispatcher_image"] = core_image
    s3_config["storage_client"] = client
    try:
        yield client
    finally:
        config.clear()
        config.update(saved_config)
        s3_config.clear()
        s3_config.update(saved_s3)


def secret_values(user_config: Any) -> dict[str, str]:
    """Credentials that must not appear in a manifest: where each comes from -> value."""
    from dflow import config, s3_config

    found: dict[str, str] = {}
    for where, table in (("dflow s3_config", s3_config), ("dflow config", config)):
        for key in SENSITIVE_KEYS:
            value = table.get(key)
            if isinstance(value, str) and value and value not in _DFLOW_DEFAULTS:
                found[f"{where}[{key!r}]"] = value
    for name in (*S3_SECRET_KEYS, "DFLOW_TOKEN", "DFLOW_PASSWORD"):
        if os.environ.get(name) and os.environ[name] not in _DFLOW_DEFAULTS:
            found[f"environment {name}"] = os.environ[name]

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{path}.{key}" if path else str(key)
                if isinstance(value, str) and _SECRET_NAME.search(str(key)) and value:
                    found[f"config {here}"] = value
                else:
                    walk(value, here)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]")

    walk(user_config, "")
    return found


def _scrub_script(source: str) -> str:
    """Drop SENSITIVE_KEYS from the config/s3_config JSON dflow embeds in a step script."""
    def scrub(match: re.Match[str]) -> str:
        data = json.loads(match.group("json"))
        for key in SENSITIVE_KEYS:
            data.pop(key, None)
        return match.group("head") + json.dumps(data) + match.group("tail")

    return _EMBEDDED.sub(scrub, source)


def _templates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return list(manifest.get("spec", {}).get("templates", []))


def _harden(manifest: dict[str, Any], secret_name: str) -> None:
    """Scrub step scripts; give every container the S3 credentials from `secret_name`."""
    from dflow import s3_config

    plain_env = {"DFLOW_S3_ENDPOINT": s3_config.get("endpoint"),
                 "DFLOW_S3_BUCKET_NAME": s3_config.get("bucket_name"),
                 "DFLOW_S3_SECURE": str(bool(s3_config.get("secure"))).lower()}
    for template in _templates(manifest):
        script = template.get("script")
        if isinstance(script, dict) and isinstance(script.get("source"), str):
            script["source"] = _scrub_script(script["source"])
        container = script if isinstance(script, dict) else template.get("container")
        if not isinstance(container, dict):
            continue
        env = [e for e in container.get("env") or [] if e.get("name") not in
               {*S3_SECRET_KEYS, *plain_env}]
        env += [{"name": name, "value": str(value)} for name, value in plain_env.items()
                if value is not None]
        env += [{"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}
                for name, key in S3_SECRET_KEYS.items()]
        container["env"] = env
    _complete_s3_artifacts(manifest.get("spec", {}), secret_name)


def _complete_s3_artifacts(node: Any, secret_name: str) -> None:
    """Every `s3` artifact location names the store and its secret (Argo's schema requires
    endpoint, bucket and the two secret references; the values are only references)."""
    from dflow import s3_config

    if isinstance(node, dict):
        s3 = node.get("s3")
        if isinstance(s3, dict) and "key" in s3:
            s3.setdefault("endpoint", s3_config.get("endpoint"))
            s3.setdefault("bucket", s3_config.get("bucket_name"))
            s3.setdefault("insecure", not s3_config.get("secure"))
            s3.setdefault("accessKeySecret", {"name": secret_name,
                                              "key": S3_SECRET_KEYS["DFLOW_S3_ACCESS_KEY"]})
            s3.setdefault("secretKeySecret", {"name": secret_name,
                                              "key": S3_SECRET_KEYS["DFLOW_S3_SECRET_KEY"]})
        for value in node.values():
            _complete_s3_artifacts(value, secret_name)
    elif isinstance(node, list):
        for value in node:
            _complete_s3_artifacts(value, secret_name)


def _find_secrets(manifest: dict[str, Any], secrets: dict[str, str]) -> list[str]:
    text = json.dumps(manifest)
    return [where for where, value in secrets.items() if value in text]


def build_manifest(workflow_ref: str, config_path: str | Path, *,
                   name: str | None = None, run_dir: Path | None = None,
                   inputs_dir: Path | None = None) -> dict[str, Any]:
    """The Argo Workflow manifest (a dict) for `workflow_ref` with the given config.

    Input files the workflow uploads are staged under `inputs_dir` (default:
    ``<run_dir>/<name>.inputs``) by their S3 keys.
    """
    from opshelf.core.local.runner import resolve_workflow

    plugin = resolve_workflow(workflow_ref)
    config_file = Path(config_path)
    if not config_file.is_file():
        raise MissingInputError(f"config file not found: {config_file}")
    config = plugin.load_config(config_file)
    wf_name = name or plugin.name
    if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", wf_name):
        raise ConfigError(f"invalid workflow name {wf_name!r}: lowercase letters, digits, '-'")
    base = (run_dir or Path.cwd()).resolve()
    staging = (inputs_dir or base / f"{wf_name}.inputs").resolve()
    ctx = BuildContext(run_dir=base, config_dir=config_file.resolve().parent, mode="argo",
                       workflow_id=wf_name)
    plugin.check(config, ctx)
    with _argo_build(staging):
        workflow = plugin.build(config, ctx)
        body = workflow.to_dict()
        secrets = secret_values(config.model_dump(mode="json"))
        # Put the identifying keys first, as kubectl and Argo write them.
        manifest: dict[str, Any] = {"apiVersion": ARGO_API_VERSION, "kind": "Workflow"}
        manifest.update({k: v for k, v in body.items() if k not in ("apiVersion", "kind")})
        _harden(manifest, os.environ.get(S3_SECRET_ENV) or DEFAULT_S3_SECRET)
    spec = manifest.setdefault("spec", {})
    spec.pop("serviceAccountName", None)
    if os.environ.get(SERVICE_ACCOUNT_ENV):
        spec["serviceAccountName"] = os.environ[SERVICE_ACCOUNT_ENV]
    leaked = _find_secrets(manifest, secrets)
    if leaked:
        raise ConfigError("refusing to write the manifest: it would contain the credential(s) "
                          f"of {', '.join(sorted(leaked))}. Give credentials to the cluster as "
                          "Kubernetes secrets (SSH keys, the S3 secret), not in the config.")
    return manifest


def export_argo(workflow_ref: str, config_path: str | Path, output: str | Path, *,
                name: str | None = None) -> Path:
    """Write the manifest as YAML to `output` (inputs staged next to it in
    ``<output stem>.inputs/``); returns its path."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest = build_manifest(workflow_ref, config_path, name=name, run_dir=out.parent,
                              inputs_dir=out.parent / f"{out.stem}.inputs")
    out.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return out
