#!/usr/bin/env bash
# Installs everything the toolkit, its tests and its notebooks need, online or
# offline. Safe to run again: finished steps are detected and skipped.
#
#   npm run setup                 everything
#   FER_SETUP_PYTHON=0 npm run setup   skip the Python tooling (.venv: test oracles, JupyterLab, the notebook kernel)
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
  # Installs a requirements file into .venv unless the stamp next to it records the file's current hash.
  pip_install_stamped() {
    local requirements=$1 label=$2
    local stamp=.venv/.${requirements%.txt}.sha256
    local want
    want=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
      echo "[setup] $label is up to date." >&2
      return
    fi
    PIP_RETRIES=${PIP_RETRIES:-0} .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
  }

  step "Python tooling in .venv (test oracles)"
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  pip_install_stamped requirements-dev.txt ".venv"

  step "Notebook tooling in .venv (JupyterLab, nbclient, nbconvert) and the TypeScript kernel"
  pip_install_stamped requirements-notebooks.txt "notebook tooling"
  # The kernel goes into .venv (where `jupyter kernelspec install --sys-prefix`
  # puts it), never into the user's or the system's Jupyter. It runs the tslab
  # of this checkout with the Node.js that runs this setup. Its name is the
  # project's own, so a tslab kernel installed elsewhere cannot take its place.
  kernel_dir=.venv/share/jupyter/kernels/fer-tslab
  mkdir -p "$kernel_dir"
  node -e '
    const [file, tslab] = process.argv.slice(1);
    const spec = JSON.stringify({
      argv: [process.execPath, tslab, "kernel", "--config-path", "{connection_file}"],
      display_name: "TypeScript (fer-toolkit)",
      language: "typescript",
    }, null, 1) + "\n";
    const fs = require("fs");
    if (!fs.existsSync(file) || fs.readFileSync(file, "utf8") !== spec) {
      fs.writeFileSync(file, spec);
      console.error(`[setup] registered the Jupyter kernel fer-tslab in ${file}`);
    }
  ' "$kernel_dir/kernel.json" "$root/node_modules/tslab/bin/tslab"
  # tslab talks to Jupyter through zeromq, whose npm package ships prebuilt
  # binaries for Linux, macOS and Windows; its skipped install script only checks them.
  node -e "require('zeromq')" 2>/dev/null || echo "[setup] warning: zeromq does not load, so the notebook kernel cannot start; run npm rebuild zeromq (needs cmake and network access)." >&2
fi

step "TypeScript build (dist/)"
npm run --silent build

# Notebooks import the library by its package name; tslab resolves it from the
# notebook's folder, so notebooks/node_modules/fer-toolkit leads to this checkout.
if [ "$(readlink notebooks/node_modules/fer-toolkit 2>/dev/null)" != "../.." ]; then
  mkdir -p notebooks/node_modules
  ln -sfn ../.. notebooks/node_modules/fer-toolkit
  echo "[setup] linked notebooks/node_modules/fer-toolkit -> the repository root" >&2
fi

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
