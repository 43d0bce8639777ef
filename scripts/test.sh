#!/usr/bin/env bash
# Set everything up, lint, and run every test: fast unit tests and the slow integration tests
# (real embedding model, real SQLite files). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check secondself tests bench examples
.venv/bin/python -m pytest --slow -q -p no:cacheprovider "$@"
