#!/usr/bin/env bash
# Set up .venv if needed (see tools/setup_env.sh), then run the test suite on CPU.
#   bash tools/run_tests.sh [pytest options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
exec "${HAT_MM_VENV:-$ROOT/.venv}/bin/python" -m pytest tests -q -p no:cacheprovider "$@"
