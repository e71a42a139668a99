#!/usr/bin/env bash
# Regenerates the example outputs of `fer predict` in images/predict/: the
# six group photos that ship in @vladmandic/face-api's demo/ folder (MIT
# licence, see node_modules/@vladmandic/face-api/LICENSE), annotated with
# boxes and labels at 960 pixels on the longer side, and their JSON records.
#
# Usage: npm run build && scripts/predict-examples.sh RUN_DIR
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: scripts/predict-examples.sh RUN_DIR (a run folder written by \"fer train\")" >&2
  exit 2
fi
run_dir=$1
demo=node_modules/@vladmandic/face-api/demo
out=images/predict

cd "$(dirname "$0")/.."
mkdir -p "$out"
node dist/cli/main.js predict "$run_dir" "$demo"/sample{1,2,3,4,5,6}.jpg --out "$out" --annotate-size 960 -q > /dev/null
du -h "$out"/*
