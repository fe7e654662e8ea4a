#!/bin/bash
# Smoke test of the opshelf-props image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
python3 -c "import opshelf.props, phonopy, pymatgen.core; print(\"smoke: props imports\")"
