#!/bin/bash
# Smoke test of the opshelf-lameval image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
opshelf list | grep -qw lameval
opshelf schema lameval > /dev/null
echo "smoke: workflow lameval is installed and has a schema"
