#!/bin/bash
# Smoke test of the opshelf-cl image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
opshelf list | grep -w cl > /dev/null  # not -q: an early exit breaks the pipe (pipefail)
opshelf schema cl > /dev/null
echo "smoke: workflow cl is installed and has a schema"
