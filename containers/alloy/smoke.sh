#!/bin/bash
# Smoke test of the opshelf-alloy image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
opshelf list | grep -qw alloy
opshelf schema alloy > /dev/null
echo "smoke: workflow alloy is installed and has a schema"
