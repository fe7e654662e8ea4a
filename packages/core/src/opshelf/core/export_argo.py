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
  credentials Argo reads from its own secret. A credential written into the config stops
  the export before any work (the config travels into the manifest and its staged inputs).
  The export fails, naming the variable and the place, if a secret value of dflow's config
  or of the environment is still in the manifest or a staged input; a value shorter than
  MIN_SEARCHED_SECRET characters cannot be told from ordinary text ("me" is in "name"): it
  is not searched for, and the export says so.
- ``serviceAccountName``: dflow hard-codes ``argo``; here it is the one given (CLI
  ``--service-account``, else OPSHELF_ARGO_SERVICE_ACCOUNT), else left out (the namespace's
  default service account).
- A last ``results`` step (core's WriteResults OP in the workflow's image) when the workflow
  names its ``results_inputs``: it does what ``collect`` does on the driver in local mode,
  and its output artifact ``results`` holds the run's results.
- ``--ssh-secret NAME`` (else OPSHELF_ARGO_SSH_SECRET): the Kubernetes secret holding the SSH
  key of dispatcher steps, mounted read-only at ``/etc/opshelf/ssh`` in their pods.
- A dispatcher password by reference (``remote_profile.password: {env: NAME}``, also a
  passphrase, a TOTP secret): the pods of the dispatcher steps whose machine names NAME get
  the variable from a Kubernetes secret (``env[].valueFrom.secretKeyRef``): ``--secret-ref
  NAME=SECRET/KEY`` (repeatable) names the secret and its key, else secret
  ``opshelf-credentials``, key NAME lower-cased. The manifest keeps the reference; the value
  need not be set at export time, and if it is, the export fails should it reach any file.
- ``artifactRepositoryRef`` (CLI ``--artifact-repository CONFIGMAP[:KEY]``, else
  OPSHELF_ARGO_ARTIFACT_REPOSITORY): the artifact repository of the namespace that stores the
  steps' outputs; without it, Argo's default repository of the namespace/controller.

Settings given as arguments win over their environment variables (``ArgoSettings``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.images import package_image, use_registry
from opshelf.core.outputs import refuse_output_over_inputs
from opshelf.core.secrets import (
    SECRET_ENV,
    SENSITIVE_KEYS,
    check_env_references,
    config_credentials,
    env_references,
    refuse_config_credentials,
    scrub_step_script,
)
from opshelf.core.workflow import BuildContext

ARGO_API_VERSION = "argoproj.io/v1alpha1"
S3_SECRET_ENV = "OPSHELF_ARGO_S3_SECRET"
SERVICE_ACCOUNT_ENV = "OPSHELF_ARGO_SERVICE_ACCOUNT"
ARTIFACT_REPOSITORY_ENV = "OPSHELF_ARGO_ARTIFACT_REPOSITORY"
SSH_SECRET_ENV = "OPSHELF_ARGO_SSH_SECRET"
#: where a dispatcher pod finds the SSH key(s) of the `ssh_secret` (remote_profile.key_filename)
SSH_KEY_DIR = "/etc/opshelf/ssh"
#: group of the image's `opshelf` user (containers/runtime): may read the mounted keys
IMAGE_GID = 10001
DEFAULT_S3_SECRET = "opshelf-s3"
#: the Kubernetes secret of a `{env: NAME}` reference that no --secret-ref names (key: name.lower())
DEFAULT_CREDENTIALS_SECRET = "opshelf-credentials"
#: environment variable of a step <- key in the S3 secret (dflow reads these variables)
S3_SECRET_KEYS = {"DFLOW_S3_ACCESS_KEY": "accesskey", "DFLOW_S3_SECRET_KEY": "secretkey"}
# dflow's own placeholders (config.py defaults): not secrets, and common words
_DFLOW_DEFAULTS = {"admin", "password"}
#: a secret value shorter than this is not searched for in an export: it matches ordinary
#: manifest text ("me" in "name", "image"), so a match would say nothing
MIN_SEARCHED_SECRET = 8


# Kubernetes object names (RFC 1123 subdomain) and ConfigMap keys
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")  # also a Secret's data key
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REGISTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")


@dataclass(frozen=True)
class ArgoSettings:
    """Cluster settings of an export. None: the environment variable, else the default."""

    service_account: str | None = None
    s3_secret: str | None = None
    image_registry: str | None = None
    #: "CONFIGMAP" or "CONFIGMAP:KEY" (Argo's artifactRepositoryRef)
    artifact_repository: str | None = None
    #: Kubernetes secret with the SSH key(s) of dispatcher steps, mounted at SSH_KEY_DIR
    ssh_secret: str | None = None
    #: "NAME=SECRET/KEY" or "NAME=SECRET": the Kubernetes secret of a `{env: NAME}` reference
    secret_refs: tuple[str, ...] = ()

    def resolved(self) -> ArgoSettings:
        """Arguments over environment variables; each value checked (ConfigError names it)."""
        from opshelf.core.images import REGISTRY_ENV

        def pick(value: str | None, env: str) -> str | None:
            return (value if value is not None else os.environ.get(env, "")).strip() or None

        settings = ArgoSettings(
            service_account=pick(self.service_account, SERVICE_ACCOUNT_ENV),
            s3_secret=pick(self.s3_secret, S3_SECRET_ENV) or DEFAULT_S3_SECRET,
            image_registry=pick(self.image_registry, REGISTRY_ENV),
            artifact_repository=pick(self.artifact_repository, ARTIFACT_REPOSITORY_ENV),
            ssh_secret=pick(self.ssh_secret, SSH_SECRET_ENV), secret_refs=self.secret_refs)
        for what, value, env in (("service account", settings.service_account,
                                  "--service-account / " + SERVICE_ACCOUNT_ENV),
                                 ("S3 secret", settings.s3_secret,
                                  "--s3-secret / " + S3_SECRET_ENV),
                                 ("SSH secret", settings.ssh_secret,
                                  "--ssh-secret / " + SSH_SECRET_ENV)):
            if value is not None and not _K8S_NAME.match(value):
                raise ConfigError(f"{what} {value!r} ({env}): not a Kubernetes name "
                                  "(lowercase letters, digits, '-', '.')")
        if settings.image_registry is not None and (
                not _REGISTRY.match(settings.image_registry) or "://" in settings.image_registry):
            raise ConfigError(f"image registry {settings.image_registry!r} (--image-registry / "
                              f"{REGISTRY_ENV}): expected HOST[/PATH], e.g. registry.example.org/opshelf")
        settings.artifact_repository_ref()  # checks it
        settings.secret_key_refs()  # checks them
        return settings

    def secret_key_refs(self) -> dict[str, tuple[str, str]]:
        """Environment variable NAME -> (secret, key) of each --secret-ref (checked)."""
        refs: dict[str, tuple[str, str]] = {}
        for given in self.secret_refs:
            name, eq, target = given.partition("=")
            secret, _, key = target.partition("/")
            key = key or name.lower()
            where = f"--secret-ref {given!r}"
            if not eq or not _ENV_NAME.match(name):
                raise ConfigError(f"{where}: expected NAME=SECRET/KEY (NAME an environment "
                                  "variable: letters, digits, _), e.g. "
                                  "SLURM_PASSWORD=hpc-login/password")
            if not _K8S_NAME.match(secret):
                raise ConfigError(f"{where}: secret {secret!r} is not a Kubernetes name "
                                  "(lowercase letters, digits, '-', '.')")
            if not _CONFIGMAP_KEY.match(key):
                raise ConfigError(f"{where}: key {key!r} is not a secret key "
                                  "(letters, digits, '-', '_', '.')")
            if name in refs and refs[name] != (secret, key):
                raise ConfigError(f"{where}: {name} is given twice")
            refs[name] = (secret, key)
        return refs

    def artifact_repository_ref(self) -> dict[str, str] | None:
        """Argo's ``artifactRepositoryRef`` for ``artifact_repository``, or None."""
        if not self.artifact_repository:
            return None
        configmap, _, key = self.artifact_repository.partition(":")
        where = f"artifact repository {self.artifact_repository!r} (--artifact-repository / " \
                f"{ARTIFACT_REPOSITORY_ENV})"
        if not _K8S_NAME.match(configmap):
            raise ConfigError(f"{where}: ConfigMap name {configmap!r} is not a Kubernetes name")
        if ":" in self.artifact_repository and not _CONFIGMAP_KEY.match(key):
            raise ConfigError(f"{where}: key {key!r} is not a ConfigMap key")
        return {"configMap": configmap, **({"key": key} if key else {})}


@dataclass
class ArgoExport:
    """What `export_argo` wrote: the manifest and the inputs to upload before submitting."""

    manifest_path: Path
    inputs_dir: Path
    #: S3 keys of the staged input files (paths under `inputs_dir`)
    staged_keys: list[str] = field(default_factory=list)
    bucket: str | None = None
    endpoint: str | None = None
    #: secrets (where each comes from) too short to search the export for
    unsearched: list[str] = field(default_factory=list)


class StagedInputs:
    """A dflow storage client that copies "uploads" into a local folder, by S3 key.

    Used while a workflow is built for export: ``upload_artifact`` then needs no server.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys: list[str] = []
        #: the user's files and folders behind the uploads (see `_linked_sources`)
        self.sources: list[Path] = []

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ConfigError(f"input artifact key {key!r} leaves the staging folder")
        return path

    def upload(self, key: str, path: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.sources += _linked_sources(Path(path))
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


def _linked_sources(upload: Path) -> list[Path]:
    """The user's paths behind one dflow upload. dflow's ``upload_artifact`` links each
    given path into a temporary folder and hands the client that folder, or its
    ``<folder>.tgz`` while the folder still exists: the links name the originals."""
    folder = upload.with_suffix("") if upload.suffix == ".tgz" else upload
    if not folder.is_dir():
        return []
    found: list[Path] = []
    for parent, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            entry = Path(parent, name)
            if entry.is_symlink():
                found.append(Path(os.path.realpath(entry)))
    return found


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
    """Credentials that must not appear in a manifest: where each comes from -> value (the
    config's own credentials included; `export_argo` refuses those before any work)."""
    from dflow import config, s3_config

    found: dict[str, str] = {}
    for where, table in (("dflow s3_config", s3_config), ("dflow config", config)):
        for key in SENSITIVE_KEYS:
            value = table.get(key)
            if isinstance(value, str) and value and value not in _DFLOW_DEFAULTS:
                found[f"{where}[{key!r}]"] = value
    for name in SECRET_ENV:
        if os.environ.get(name) and os.environ[name] not in _DFLOW_DEFAULTS:
            found[f"environment {name}"] = os.environ[name]

    found.update(config_credentials(user_config))
    # a `{env: NAME}` reference travels as the reference: its value, if set here, must not
    for where, name in env_references(user_config).items():
        if os.environ.get(name):
            found[f"environment {name} (config {where})"] = os.environ[name]
    return found


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
            script["source"] = scrub_step_script(script["source"])
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


#: the dpdispatcher machine of a dispatcher step's script: dflow's own load, or the one
#: opshelf's PolledDispatcherExecutor puts in its place (it resolves `{env: NAME}`)
_MACHINE = re.compile(r"(?:Machine\.load_from_dict|_opshelf_machine)"
                      r"\(json\.loads\(r'(?P<json>.*?)'\)\)")


def _dispatcher_templates(manifest: dict[str, Any]) -> Iterator[
        tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(template, its script, its dpdispatcher machine) of every pod that runs dpdispatcher."""
    for template in _templates(manifest):
        script = template.get("script")
        found = _MACHINE.search(script.get("source", "")) if isinstance(script, dict) else None
        if found:
            yield template, script, json.loads(found.group("json"))


def _wire_env_secrets(manifest: dict[str, Any], refs: dict[str, tuple[str, str]]) -> set[str]:
    """Give each dispatcher pod the variables its machine's `{env: NAME}` references read,
    from a Kubernetes secret (`refs`, else DEFAULT_CREDENTIALS_SECRET, key NAME lower-cased);
    the names wired. A --secret-ref naming no reference of a dispatcher step is refused."""
    from opshelf.core.secrets import env_reference

    wired: set[str] = set()
    for _template, script, machine in _dispatcher_templates(manifest):
        names = sorted({name for value in (machine.get("remote_profile") or {}).values()
                        if (name := env_reference(value)) is not None})
        if not names:
            continue
        if set(names) & set(S3_SECRET_KEYS):
            raise ConfigError(f"remote_profile: {{env: {min(set(names) & set(S3_SECRET_KEYS))}}}"
                              " names a variable the pods take from the S3 secret; use another")
        env = [e for e in script.get("env") or [] if e.get("name") not in names]
        for name in names:
            secret, key = refs.get(name, (DEFAULT_CREDENTIALS_SECRET, name.lower()))
            env.append({"name": name,
                        "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
        script["env"] = env
        wired.update(names)
    unused = sorted(set(refs) - wired)
    if unused:
        raise ConfigError(f"--secret-ref {', '.join(unused)}: no dispatcher step of this config "
                          "reads it (machine.remote_profile.KEY: {env: NAME})")
    return wired


def _mount_ssh_secret(manifest: dict[str, Any], secret_name: str) -> None:
    """Mount `secret_name` read-only at SSH_KEY_DIR in every pod that runs dpdispatcher (a
    dispatcher step), readable by the image's user only (group IMAGE_GID, mode 0440). An SSH
    step's ``remote_profile.key_filename`` must point there."""
    mounted = 0
    for template, script, machine in _dispatcher_templates(manifest):
        if machine.get("context_type") == "SSHContext":
            key = str((machine.get("remote_profile") or {}).get("key_filename") or "")
            if not key.startswith(SSH_KEY_DIR + "/"):
                raise ConfigError(
                    f"dispatcher step {template.get('name')!r}: remote_profile.key_filename is "
                    f"{key or 'not set'}; with --ssh-secret the key is mounted at "
                    f"{SSH_KEY_DIR}/<key in the secret>, e.g. {SSH_KEY_DIR}/id_ed25519")
        template.setdefault("volumes", []).append(
            {"name": "opshelf-ssh", "secret": {"secretName": secret_name, "defaultMode": 0o440}})
        script.setdefault("volumeMounts", []).append(
            {"name": "opshelf-ssh", "mountPath": SSH_KEY_DIR, "readOnly": True})
        template.setdefault("securityContext", {}).setdefault("fsGroup", IMAGE_GID)
        mounted += 1
    if not mounted:
        raise ConfigError(f"--ssh-secret {secret_name}: no step of this config runs through a "
                          "dispatcher (steps: {STEP: {executor: {kind: dispatcher, ...}}})")


def _first_place(node: Any, value: str, path: str = "manifest") -> str | None:
    """The dotted path of the first string of `node` holding `value` (a key holding it: its
    mapping's path, so the message never shows the value)."""
    if isinstance(node, dict):
        if any(value in str(key) for key in node):
            return f"{path} (a key)"
        children = [(f"{path}.{key}", child) for key, child in node.items()]
    elif isinstance(node, list):
        children = [(f"{path}[{i}]", child) for i, child in enumerate(node)]
    else:
        return path if value in str(node) else None
    for here, child in children:
        found = _first_place(child, value, here)
        if found is not None:
            return found
    return None


def _find_secrets(manifest: dict[str, Any], secrets: dict[str, str]) -> list[str]:
    """'<where the secret comes from> at manifest.<path>' for each secret found."""
    found = []
    for where, value in secrets.items():
        place = _first_place(manifest, value)
        if place is not None:
            found.append(f"{where} at {place}")
    return found


def _staged_contents(root: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every staged file, and of every member of a staged tarball."""
    import tarfile

    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    handle = archive.extractfile(member) if member.isfile() else None
                    if handle is not None:
                        yield f"{name}:{member.name}", handle.read()
        else:
            yield name, path.read_bytes()


def _find_staged_secrets(root: Path, secrets: dict[str, str]) -> list[str]:
    """The secrets whose value is in a staged input (dflow stages big parameters, the
    config among them, as files, and the input files as tarballs)."""
    if not root.is_dir() or not secrets:
        return []
    leaked: dict[str, str] = {}
    for name, data in _staged_contents(root):
        for where, value in secrets.items():
            if where not in leaked and value.encode() in data:
                leaked[where] = f"{where} in staged input {name}"
    return sorted(leaked.values())


#: why an export refuses a config holding a credential, and what to do instead
EXPORT_REFUSAL = ("refusing to export (nothing written), the config travels into the manifest "
                  "and its staged inputs. Pass credentials as environment variables from a "
                  "Kubernetes secret reference, not in the config (a password: "
                  "remote_profile.password: {env: NAME} with --secret-ref NAME=SECRET/KEY; SSH "
                  "keys: --ssh-secret)")


def _split_searchable(secrets: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(the secrets long enough to search for, where the too-short ones come from)."""
    searched = {w: v for w, v in secrets.items() if len(v) >= MIN_SEARCHED_SECRET}
    return searched, sorted(set(secrets) - set(searched))


def build_manifest(workflow_ref: str, config_path: str | Path, *,
                   name: str | None = None, run_dir: Path | None = None,
                   inputs_dir: Path | None = None,
                   settings: ArgoSettings | None = None) -> dict[str, Any]:
    """The Argo Workflow manifest (a dict) for `workflow_ref` with the given config.

    Input files the workflow uploads are staged under `inputs_dir` (default:
    ``<run_dir>/<name>.inputs``) by their S3 keys.
    """
    manifest, _, _ = _build_manifest(workflow_ref, config_path, name=name, run_dir=run_dir,
                                     inputs_dir=inputs_dir, settings=settings)
    return manifest


def _build_manifest(workflow_ref: str, config_path: str | Path, *, name: str | None,
                    run_dir: Path | None, inputs_dir: Path | None,
                    settings: ArgoSettings | None,
                    ) -> tuple[dict[str, Any], StagedInputs, list[str]]:
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
    settings = (settings or ArgoSettings()).resolved()
    check_env_references(config.model_dump(mode="json"), config_file, require_set=False)
    refuse_config_credentials(config.model_dump(mode="json"), config_file,
                              why=EXPORT_REFUSAL)
    plugin.check(config, ctx)
    with use_registry(settings.image_registry), _argo_build(staging) as staged:
        from opshelf.core.dflow_build import results_step

        workflow = plugin.build(config, ctx)
        # no driver runs `collect` in a cluster: the workflow ends by writing its results
        final = results_step(plugin, workflow_ref, config, workflow, mode="argo")
        if final is not None:
            workflow.add(final)
        body = workflow.to_dict()
        secrets, unsearched = _split_searchable(secret_values(config.model_dump(mode="json")))
        # Put the identifying keys first, as kubectl and Argo write them.
        manifest: dict[str, Any] = {"apiVersion": ARGO_API_VERSION, "kind": "Workflow"}
        manifest.update({k: v for k, v in body.items() if k not in ("apiVersion", "kind")})
        _harden(manifest, settings.s3_secret or DEFAULT_S3_SECRET)
    spec = manifest.setdefault("spec", {})
    spec.pop("serviceAccountName", None)
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    repository = settings.artifact_repository_ref()
    if repository:
        spec["artifactRepositoryRef"] = repository
    if settings.ssh_secret:
        _mount_ssh_secret(manifest, settings.ssh_secret)
    _wire_env_secrets(manifest, settings.secret_key_refs())
    leaked = sorted({*_find_secrets(manifest, secrets), *_find_staged_secrets(staging, secrets)})
    if leaked:
        raise ConfigError(
            "refusing to export (nothing written): the manifest or its staged inputs would hold "
            f"a credential: {'; '.join(leaked)}. Pass credentials as environment "
            "variables from a Kubernetes secret reference, not in the config (SSH keys: "
            "--ssh-secret; S3 keys: --s3-secret; a password: remote_profile.password: "
            "{env: NAME} with --secret-ref NAME=SECRET/KEY).")
    return manifest, staged, unsearched


def export_argo(workflow_ref: str, config_path: str | Path, output: str | Path, *,
                name: str | None = None, settings: ArgoSettings | None = None) -> ArgoExport:
    """Write the manifest as YAML to `output`, the workflow's input files staged next to it
    in ``<output stem>.inputs/``; returns what was written and where the inputs must go.

    Everything is built in a private scratch folder first (mode 0700, removed afterwards):
    a refused export (bad config, output over an input, a credential in the manifest or
    in a staged input) writes nothing."""
    from dflow import s3_config

    out = Path(output)
    refuse_output_over_inputs(out, [config_path])
    inputs_dir = out.parent / f"{out.stem}.inputs"
    with tempfile.TemporaryDirectory(prefix="opshelf-export-") as scratch:
        staging = Path(scratch, "inputs")
        manifest, staged, unsearched = _build_manifest(
            workflow_ref, config_path, name=name, run_dir=Path(scratch, "run"),
            inputs_dir=staging, settings=settings)
        refuse_output_over_inputs(out, staged.sources)
        text = yaml.safe_dump(manifest, sort_keys=False)
        out.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(set(staged.keys))
        for key in keys:
            target = inputs_dir / key
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(staging / key, target)
        out.write_text(text)
    return ArgoExport(manifest_path=out, inputs_dir=inputs_dir, staged_keys=keys,
                      bucket=s3_config.get("bucket_name"), endpoint=s3_config.get("endpoint"),
                      unsearched=unsearched)


def upload_instructions(done: ArgoExport) -> str:
    """What `opshelf export-argo` prints: what was written, what to upload where, then submit."""
    lines = [f"opshelf: wrote {done.manifest_path}"]
    bucket = done.bucket or "<bucket>"
    if done.staged_keys:
        lines += [f"opshelf: staged {len(done.staged_keys)} input file(s) under "
                  f"{done.inputs_dir}/ (by their S3 keys):",
                  *(f"  {key}" for key in done.staged_keys[:10]),
                  *([f"  ... and {len(done.staged_keys) - 10} more"]
                    if len(done.staged_keys) > 10 else []),
                  f"opshelf: before submitting, upload that folder to the root of bucket "
                  f"{bucket!r} at {done.endpoint or '<endpoint>'}, e.g.",
                  f"  mc cp --recursive {done.inputs_dir}/ <alias>/{bucket}/"]
    else:
        lines.append("opshelf: the workflow has no input files to upload")
    lines.append(f"opshelf: then submit: argo submit -n <namespace> {done.manifest_path}")
    if done.unsearched:
        lines.append(f"opshelf: note: not searched for in the export (shorter than "
                     f"{MIN_SEARCHED_SECRET} characters, indistinguishable from ordinary text): "
                     f"{', '.join(done.unsearched)}")
    return "\n".join(lines)
