"""Credentials never written to disk in the clear: what counts as one, and the scrubbing of
dflow's step scripts.

dflow's ``PythonOPTemplate`` embeds its whole ``config`` and ``s3_config`` as JSON into every
step script (``config.update(jsonpickle.loads(r'''...'''))``), S3 access and secret keys and
the Argo token included, read from the environment (DFLOW_S3_ACCESS_KEY, ...). A step
process imports dflow, which reads the same variables from its own environment, so the
embedded copies are only a leak: `scrub_step_script` removes them. opshelf's local runner
applies it to every script it writes (``opshelf.core.local.patches``), ``export-argo`` to every
script of a manifest.

A credential the user writes into a config (a dispatcher ``remote_profile.password``, an
``sshpass -p`` command, an engine ``env`` token) would be copied with the config into the run
directory and into an export: `refuse_config_credentials` stops `opshelf run` (and rerun)
before anything is written, as ``export-argo`` stops its export.

A dispatcher secret is given by reference instead, as a mapping naming an environment
variable::

    remote_profile: {hostname: login.example.org, username: me,
                     password: {env: SLURM_PASSWORD}}

The mapping form, not a ``"${env:NAME}"`` string: YAML and JSON keep it a structure (nothing
to escape, a real password holding ``${`` stays a password), a schema can tell it from a
value, and no shell that dpdispatcher or a scheduler runs a string through expands it. The
config, run.json, the staged inputs and dflow's step scripts hold only the reference. The
variable is read in the memory of the process that submits the job (`RESOLVE_MACHINE_SOURCE`,
put into the dispatcher step's script), and dpdispatcher's records of the submission (its
local recovery record, the remote ``<hash>.json``) show ``<env:NAME>``. `check_env_references`
refuses, before any work, a reference anywhere but in a dispatcher machine's
``remote_profile`` and (for a run) one whose variable is not set. ``export-argo`` keeps the
reference and gives each dispatcher pod that reads NAME the variable from a Kubernetes
secret (``env[].valueFrom.secretKeyRef``; ``--secret-ref NAME=SECRET/KEY``, else secret
``opshelf-credentials``, key NAME lower-cased: ``opshelf.core.export_argo``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opshelf.core.errors import ConfigError

#: keys of dflow's config / s3_config never written into a step script
SENSITIVE_KEYS = frozenset({"access_key", "secret_key", "token", "password", "storage_client",
                            "private_key", "ticket"})
#: environment variables holding credentials: never in a manifest, a script or a staged input
SECRET_ENV = ("DFLOW_S3_ACCESS_KEY", "DFLOW_S3_SECRET_KEY", "DFLOW_TOKEN", "DFLOW_PASSWORD",
              "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

#: config keys whose string values are credentials (dispatcher remote_profile, ...)
_SECRET_NAME = re.compile(r"(password|passwd|passphrase|secret|token|access_?key|private_?key|"
                          r"ticket|credential)", re.IGNORECASE)
#: a password on a command line (remote_profile.execute_command: ``sshpass -p PASSWORD ...``)
_INLINE_PASSWORD = re.compile(r"(?:\bsshpass\s+(?:\S+\s+)*?-p\s*|--password[= ])"
                              r"(?P<value>'[^']+'|\"[^\"]+\"|[^\s'\"]+)")

_EMBEDDED = re.compile(r"(?P<head>(?:s3_)?config\.update\(jsonpickle\.loads\(r''')"
                       r"(?P<json>.*?)(?P<tail>'''\)\))", re.DOTALL)


def scrub_step_script(source: str) -> str:
    """`source` with SENSITIVE_KEYS dropped from the config/s3_config JSON that dflow embeds."""
    def scrub(match: re.Match[str]) -> str:
        data = json.loads(match.group("json"))
        for key in SENSITIVE_KEYS:
            data.pop(key, None)
        return match.group("head") + json.dumps(data) + match.group("tail")

    return _EMBEDDED.sub(scrub, source)


def config_credentials(user_config: Any) -> dict[str, str]:
    """Credentials written into a config: 'config <dotted key>' -> value (a string under a key
    named like a credential, or a password on an sshpass/--password command line)."""
    found: dict[str, str] = {}

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
        elif isinstance(node, str):
            for match in _INLINE_PASSWORD.finditer(node):
                found[f"config {path} (a password on its command line)"] = \
                    match.group("value").strip("'\"")

    walk(user_config, "")
    return found


#: why a run refuses a config holding a credential, and what to do instead
RUN_REFUSAL = ("opshelf keeps a copy of the config in the run directory, so it refuses to run "
               "with one (nothing written). Use an SSH key (remote_profile.key_filename), or "
               "name an environment variable instead of the value (remote_profile.password: "
               "{env: NAME})")


def refuse_config_credentials(user_config: Any, config_file: str | Path, *,
                              why: str = RUN_REFUSAL) -> None:
    """ConfigError (one line, naming the keys, never the values, then `why`) when the config
    holds a credential: the config is copied into the run directory (an export: into the
    manifest and its staged inputs), where it would sit in the clear."""
    found = sorted(where.removeprefix("config ") for where in config_credentials(user_config))
    if found:
        raise ConfigError(f"{config_file}: a credential in the config ({', '.join(found)}): "
                          f"{why}")


#: where a reference `{env: NAME}` may stand: a key of a dispatcher machine's remote_profile
_REFERENCE_PLACE = re.compile(r"(^|\.)executor\.machine\.remote_profile\.[^.\[]+$")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_reference(node: Any) -> str | None:
    """NAME when `node` is a reference `{env: NAME}` to an environment variable, else None."""
    if isinstance(node, Mapping) and list(node) == ["env"] and isinstance(node["env"], str):
        return node["env"]
    return None


def env_references(user_config: Any) -> dict[str, str]:
    """Every `{env: NAME}` in a config: dotted key -> NAME."""
    found: dict[str, str] = {}

    def walk(node: Any, path: str) -> None:
        name = env_reference(node)
        if name is not None:
            found[path] = name
        elif isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]")

    walk(user_config, "")
    return found


def check_env_references(user_config: Any, config_file: str | Path,
                         environ: Mapping[str, str] | None = None, *,
                         require_set: bool = True) -> None:
    """ConfigError (one line, naming the key and the variable, never a value) for a reference
    `{env: NAME}` outside a dispatcher machine's remote_profile, with a malformed NAME, or
    (`require_set`: a run, which submits from here) whose variable is unset or empty in
    `environ` (this process's environment). An export does not need the value: its pods read
    the variable from a Kubernetes secret."""
    environ = os.environ if environ is None else environ
    for where, name in sorted(env_references(user_config).items()):
        if not _REFERENCE_PLACE.search(where):
            raise ConfigError(f"{config_file}: {where}: an environment reference {{env: {name}}} "
                              "is resolved only as a key of a dispatcher executor's "
                              "machine.remote_profile (password, passphrase, totp_secret, ...)")
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"{config_file}: {where}: {{env: {name!r}}} is no environment "
                              "variable name (letters, digits, _; not starting with a digit)")
        if require_set and not environ.get(name):
            raise ConfigError(f"{config_file}: {where} names the environment variable {name}, "
                              "which is not set (nothing written); export it in the shell "
                              "that runs opshelf")


#: Python source put into a dispatcher step's script: builds dpdispatcher's Machine with every
#: `{env: NAME}` of remote_profile read from the step's environment, in memory; the machine's
#: remote_profile then shows `<env:NAME>`, so the submission records dpdispatcher writes (and
#: hashes) never hold the value. The live SSH session keeps what it connected with.
RESOLVE_MACHINE_SOURCE = r'''
def _opshelf_machine(machine_dict):
    import os
    from dpdispatcher import Machine

    resolved, shown = {}, {}
    for key, value in (machine_dict.get("remote_profile") or {}).items():
        if isinstance(value, dict) and list(value) == ["env"]:
            name = value["env"]
            if not os.environ.get(name):
                raise RuntimeError(f"machine.remote_profile.{key}: the environment variable "
                                   f"{name} is not set where this step runs")
            resolved[key], shown[key] = os.environ[name], f"<env:{name}>"
        else:
            resolved[key] = shown[key] = value
    machine = Machine.load_from_dict({**machine_dict, "remote_profile": resolved})
    machine.context.remote_profile = {**machine.context.remote_profile, **shown}
    return machine

'''
