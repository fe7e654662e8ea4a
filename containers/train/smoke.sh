#!/bin/bash
# Smoke test of the opshelf-train image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
python3 -c "import opshelf.train"
dp --version
