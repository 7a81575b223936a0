#!/usr/bin/env bash
# From a fresh clone: install dependencies, build, convert the bundled stories260K model into 4
# tensor-parallel shards, and stream a story from `mpirun -np 4 build/tpinfer configs/demo.yaml`.
# Extra arguments are passed to tpinfer (e.g. --prompt "Tom had a dog" --temperature 0).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install_deps.sh
scripts/build.sh
out=build/models/stories260K-tp4
if ! /usr/bin/python3 scripts/convert_hf.py --is-current "$out" ||
    [[ configs/models/stories260K/model.safetensors -nt $out/manifest.json ]]; then
  /usr/bin/python3 scripts/convert_hf.py --model configs/models/stories260K --tp 4 --out "$out" --dtype f32
fi
scripts/mpirun.sh -np 4 build/tpinfer configs/demo.yaml --metrics-json build/demo-metrics.json "$@"
