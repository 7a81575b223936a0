#!/usr/bin/env bash
# Broken inputs for the refusal tests, made from the converted bundled model (tp 4) and its HF dir.
# Usage: make_fixtures.sh CONVERTED_TP4_DIR HF_DIR WORK_DIR
set -euo pipefail
src=$1 hf=$2 work=$3
mkdir -p "$work"
cat >"$work/bad_key.yaml" <<YAML
model: $src
max_tokens: 10
YAML

# Rank 2's shard cut short (as by a failed copy): only rank 2 can notice.
rm -rf "$work/stories-truncated-rank2"
cp -r "$src" "$work/stories-truncated-rank2"
truncate -s 2000 "$work/stories-truncated-rank2/rank2-of-4.h5"

# Rank 1's shard holds a tensor of the wrong shape (manifest sizes and sha256 kept consistent).
rm -rf "$work/stories-swapped-rank1"
cp -r "$src" "$work/stories-swapped-rank1"
/usr/bin/python3 - "$work/stories-swapped-rank1" <<'PY'
import hashlib, json, os, sys
import h5py, numpy as np
d = sys.argv[1]
path = os.path.join(d, "rank1-of-4.h5")
name = "model.layers.0.mlp.down_proj.weight"
with h5py.File(path, "r+") as f:
    attrs = dict(f[name].attrs)
    data = np.zeros((64, 86), dtype=np.float32)
    del f[name]
    ds = f.create_dataset(name, data=data)
    for k, v in attrs.items():
        ds.attrs[k] = v
m = json.load(open(os.path.join(d, "manifest.json")))
for entry in m["files"]:
    p = os.path.join(d, entry.get("path", entry.get("name", "")))
    entry["bytes"] = os.path.getsize(p)
    entry["sha256"] = hashlib.sha256(open(p, "rb").read()).hexdigest()
json.dump(m, open(os.path.join(d, "manifest.json"), "w"), indent=1)
PY

tamper="/usr/bin/python3 $(cd "$(dirname "$0")/../io" && pwd)/tamper_shard.py"

# Rank 3's shard with one bit flipped after conversion (same size, other bytes): only its sha256
# tells.
rm -rf "$work/stories-bitflip-rank3"
cp -r "$src" "$work/stories-bitflip-rank3"
$tamper "$work/stories-bitflip-rank3" 3 flipbit model.layers.2.mlp.gate_up_proj.weight

# NaN in the final norm of every rank (manifest updated: the files are "valid"): every logit is
# NaN, which must fail the request, never print garbage with exit 0.
rm -rf "$work/stories-nan"
cp -r "$src" "$work/stories-nan"
for r in 0 1 2 3; do $tamper "$work/stories-nan" $r set model.norm.weight 5 nan; done

# A directory written by the format-1 converter (separate q/k/v and gate/up): its manifest says so.
rm -rf "$work/stories-format1"
cp -r "$src" "$work/stories-format1"
/usr/bin/python3 - "$work/stories-format1/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["format_version"] = 1
json.dump(m, open(sys.argv[1], "w"), indent=1)
PY

# A manifest whose vocab_size would overflow an int in vocab_size + tp - 1.
rm -rf "$work/stories-huge-vocab"
cp -r "$src" "$work/stories-huge-vocab"
/usr/bin/python3 - "$work/stories-huge-vocab/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["config"]["vocab_size"] = 2147483647
json.dump(m, open(sys.argv[1], "w"), indent=1)
PY

# File arguments: a directory where a file belongs, a prompt over max_request_bytes (4 MiB), a
# batch input reached through a symlink and a relative path.
mkdir -p "$work/a-directory"
head -c 5000000 /dev/zero | tr '\0' 'a' >"$work/prompt-5MB.txt"
echo '{"id": 1, "prompt": "Once upon a time", "max_new_tokens": 4}' >"$work/requests.jsonl"
ln -sf requests.jsonl "$work/requests-link.jsonl"

# HF configs the engine must refuse (for --dummy-weights, which reads config.json).
mkdir -p "$work/hf-gpt2" "$work/hf-rope-scaling"
/usr/bin/python3 - "$hf/config.json" "$work" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
work = sys.argv[2]
gpt2 = dict(cfg, architectures=["GPT2LMHeadModel"], model_type="gpt2")
json.dump(gpt2, open(f"{work}/hf-gpt2/config.json", "w"))
rope = dict(cfg, rope_scaling={"rope_type": "proportional", "factor": 4.0})
json.dump(rope, open(f"{work}/hf-rope-scaling/config.json", "w"))
PY
echo "fixtures ready in $work"
