#!/usr/bin/env bash
# Installs everything the toolkit, its tests and its notebooks need, online or
# offline. Safe to run again: finished steps are detected and skipped.
#
#   npm run setup                 everything
#   FER_SETUP_PYTHON=0 npm run setup   skip the Python tooling (.venv)
#
# Environment: PYTHON (python3), FER_SHARED (../shared, where offline datasets
# and weights live), FER_TFJS_FROM_WHEEL=1 (never try the libtensorflow download).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${PYTHON:-python3}
shared=${FER_SHARED:-$root/../shared}

step() { printf '\n[setup] %s\n' "$*" >&2; }

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "[setup] error: Node.js 20 or later is required (found $(node --version))." >&2
  exit 1
fi

step "npm packages"
# Install scripts are skipped here and run one by one below: tfjs-node's would
# abort the whole install where storage.googleapis.com is unreachable.
npm install --ignore-scripts --no-audit --no-fund --loglevel=error
node -e "require('sharp')" || { echo "[setup] error: sharp does not load; see the message above." >&2; exit 1; }

step "@tensorflow/tfjs-node"
bash scripts/install-tfjs-node.sh

if [ "${FER_SETUP_PYTHON:-1}" != "0" ]; then
  step "Python tooling in .venv (test oracles)"
  stamp=.venv/.requirements-dev.sha256
  want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "[setup] .venv is up to date." >&2
  else
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    PIP_RETRIES=${PIP_RETRIES:-0} .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    echo "$want" > "$stamp"
  fi
fi

step "TypeScript build (dist/)"
npm run --silent build

step "data and weights"
mkdir -p data
link_shared() {
  local name=$1 source=$2
  if [ -e "data/$name" ]; then
    echo "[setup] data/$name is present." >&2
  elif [ -d "$source" ]; then
    ln -s "$(cd "$source" && pwd)" "data/$name"
    echo "[setup] linked data/$name -> $source" >&2
  else
    echo "[setup] data/$name is missing; see data/README.md for where to get it." >&2
  fi
}
link_shared fer2013 "$shared/datasets/fer2013"
link_shared weights "$shared/weights"

if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null && [ -z "${FER_CHROMIUM:-}" ]; then
  echo "[setup] note: no Chromium found; PNG figures need it (apt-get install chromium, or set FER_CHROMIUM)." >&2
fi
step "done"
