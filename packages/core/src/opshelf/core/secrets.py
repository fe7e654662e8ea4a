"""Credentials never written to disk in the clear: what counts as one, and the scrubbing of
dflow's step scripts.

dflow's ``PythonOPTemplate`` embeds its whole ``config`` and ``s3_config`` as JSON into every
step script (``config.update(jsonpickle.loads(r'''...'''))``), S3 access and secret keys and
the Argo token included, read from the environment (DFLOW_S3_ACCESS_KEY, ...). A step
process imports dflow, which reads the same variables from its own environment, so the
embedded copies are only a leak: `scrub_step_script` removes them. opshelf's local runner
applies it to every script it writes (``opshelf.core.local.patches``), ``export-argo`` to every
script of a manifest.
"""

from __future__ import annotations

import json
import re

#: keys of dflow's config / s3_config never written into a step script
SENSITIVE_KEYS = frozenset({"access_key", "secret_key", "token", "password", "storage_client",
                            "private_key", "ticket"})
#: environment variables holding credentials: never in a manifest, a script or a staged input
SECRET_ENV = ("DFLOW_S3_ACCESS_KEY", "DFLOW_S3_SECRET_KEY", "DFLOW_TOKEN", "DFLOW_PASSWORD",
              "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

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
