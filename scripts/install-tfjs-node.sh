#!/usr/bin/env bash
# Makes @tensorflow/tfjs-node loadable, online or offline.
#
# Online, the package's own install script downloads libtensorflow 2.9.1 and a
# prebuilt binding from storage.googleapis.com. Where that download fails (no
# internet), the binding is compiled with node-gyp against the TensorFlow C
# library and headers shipped in the tensorflow-cpu wheel, which pip fetches
# from whatever index it is configured with (PyPI or a local mirror).
#
# Environment:
#   FER_TFJS_FROM_WHEEL=1   skip the download attempt and build from the wheel
#   FER_TF_WHEEL_VERSION    tensorflow-cpu version to build against (2.21.0)
#   PYTHON                  python interpreter with pip (python3)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pkg="$root/node_modules/@tensorflow/tfjs-node"
wheel_version=${FER_TF_WHEEL_VERSION:-2.21.0}
python=${PYTHON:-python3}
cache="$root/.cache/libtensorflow-$wheel_version"
mkdir -p "$root/.cache"

log() { printf '[install-tfjs-node] %s\n' "$*" >&2; }

binding_loads() {
  (cd "$root" && node -e "require('@tensorflow/tfjs-node')" >/dev/null 2>&1)
}

if [ ! -d "$pkg" ]; then
  log "error: $pkg is missing; run 'npm install --ignore-scripts' first."
  exit 1
fi

if binding_loads; then
  log "tfjs-node binding already loads; nothing to do."
  exit 0
fi

if [ "${FER_TFJS_FROM_WHEEL:-0}" != "1" ]; then
  log "trying the normal tfjs-node install (downloads libtensorflow 2.9.1)..."
  if (cd "$pkg" && rm -rf deps && timeout 900 node scripts/install.js) >"$root/.cache/tfjs-node-install.log" 2>&1 \
    && binding_loads; then
    log "installed with the downloaded libtensorflow."
    exit 0
  fi
  log "download install failed (log: .cache/tfjs-node-install.log); building against the tensorflow-cpu $wheel_version wheel."
fi

# Extract libtensorflow_cc.so.2, libtensorflow_framework.so.2 and the headers from the wheel, once.
if [ ! -f "$cache/.complete" ]; then
  mkdir -p "$root/.cache/wheels"
  wheel=$(ls "$root/.cache/wheels"/tensorflow_cpu-"$wheel_version"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    log "fetching tensorflow-cpu==$wheel_version with pip (no dependencies)..."
    PIP_RETRIES=${PIP_RETRIES:-0} "$python" -m pip download --quiet --no-deps --only-binary=:all: \
      -d "$root/.cache/wheels" "tensorflow-cpu==$wheel_version"
    wheel=$(ls "$root/.cache/wheels"/tensorflow_cpu-"$wheel_version"-*.whl | head -n 1)
  fi
  log "extracting the C library and headers from $(basename "$wheel")..."
  rm -rf "$cache"
  "$python" - "$wheel" "$cache" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
wanted_libs = {"tensorflow/libtensorflow_cc.so.2", "tensorflow/libtensorflow_framework.so.2"}
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name in wanted_libs:
            target = os.path.join(dest, "lib", os.path.basename(name))
        elif name.startswith("tensorflow/include/"):
            target = os.path.join(dest, "include", name[len("tensorflow/include/"):])
        else:
            continue
        if name.endswith("/"):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with archive.open(name) as source, open(target, "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
PY
  for lib in libtensorflow_cc.so.2 libtensorflow_framework.so.2; do
    [ -f "$cache/lib/$lib" ] || { log "error: $lib not found in $wheel"; exit 1; }
  done
  touch "$cache/.complete"
fi

# binding.gyp links -ltensorflow -ltensorflow_framework with rpath $ORIGIN/../../deps/lib.
rm -rf "$pkg/deps"
mkdir -p "$pkg/deps/lib"
for lib in libtensorflow_cc.so.2 libtensorflow_framework.so.2; do
  ln "$cache/lib/$lib" "$pkg/deps/lib/$lib" 2>/dev/null || cp "$cache/lib/$lib" "$pkg/deps/lib/$lib"
done
ln -s libtensorflow_cc.so.2 "$pkg/deps/lib/libtensorflow.so"
ln -s libtensorflow_framework.so.2 "$pkg/deps/lib/libtensorflow_framework.so"
ln -s "$cache/include" "$pkg/deps/include"

log "compiling the binding with node-gyp (about a minute)..."
(cd "$pkg" && npx --no-install node-pre-gyp install --build-from-source >"$root/.cache/tfjs-node-build.log" 2>&1) || {
  log "error: node-gyp build failed; see .cache/tfjs-node-build.log"
  exit 1
}
if ! binding_loads; then
  log "error: the binding was built but does not load:"
  (cd "$root" && node -e "require('@tensorflow/tfjs-node')") || true
  exit 1
fi
log "built against tensorflow-cpu $wheel_version."
