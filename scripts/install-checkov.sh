#!/usr/bin/env bash
# Install checkov into its own virtualenv (.tools/checkov-venv), never into .venv:
# checkov pins older boto3/botocore and would downgrade the project's AWS adapters.
# Idempotent: does nothing when the pinned version is already installed.
# Usage: scripts/install-checkov.sh [DEST]   (default: .tools/checkov-venv)
set -euo pipefail

CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/.tools/checkov-venv}"

installed="$("$DEST/bin/python" -m pip show checkov 2>/dev/null || true)"
if [[ -x "$DEST/bin/checkov" && "$installed" == *$'\n'"Version: $CHECKOV_VERSION"$'\n'* ]]; then
    exit 0
fi

"$PYTHON" -m venv "$DEST"
"$DEST/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
"$DEST/bin/checkov" --version
