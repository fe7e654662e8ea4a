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
"""

from __future__ import annotations

import json
import re
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


def refuse_config_credentials(user_config: Any, config_file: str | Path) -> None:
    """ConfigError (one line, naming the keys, never the values) when the config holds a
    credential: the config is copied into the run directory, where it would sit in the clear."""
    found = sorted(where.removeprefix("config ") for where in config_credentials(user_config))
    if found:
        raise ConfigError(
            f"{config_file}: a credential in the config ({', '.join(found)}): opshelf keeps a "
            "copy of the config in the run directory, so it refuses to run with one (nothing "
            "written). Use an SSH key (remote_profile.key_filename) and put secrets in the "
            "environment opshelf runs in (steps inherit it), not in the config")
