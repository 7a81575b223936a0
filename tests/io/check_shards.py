#!/usr/bin/python3
"""Python-side round trip for one model: convert at tp 1, 2, 4 (f32), then check with h5py that
concatenating each tensor's shards (dropping vocab padding, which must be zero) reproduces the HF
tensor exactly, that replicated tensors are identical on every rank, that every dataset carries
global_shape/split_dim, and that the manifest's sizes and sha256 match the files.

    /usr/bin/python3 tests/io/check_shards.py --model HF_DIR --work SCRATCH_DIR
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import convert_hf  # noqa: E402  (the converter's own safetensors reader and table)


def check(model, work, tp):
    out = os.path.join(work, "tp%d" % tp)
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert_hf.py"), "--model",
                    model, "--tp", str(tp), "--out", out, "--dtype", "f32", "--quiet"], check=True)
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["format"] == "tpinfer-shards" and manifest["format_version"] == 2
    assert manifest["tp"] == tp and manifest["dtype"] == "f32"
    for entry in manifest["files"]:
        path = os.path.join(out, entry["path"])
        assert os.path.getsize(path) == entry["bytes"], path
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"], path

    st = convert_hf.SafetensorsIndex(model)
    _, _, c = convert_hf.read_model(model)
    convert_hf.split_phi3(c, st)
    convert_hf.rename_moe(c, st)  # Mixtral's Hub names -> the table's
    files = [h5py.File(os.path.join(out, e["path"]), "r") for e in manifest["files"]]
    for r, f in enumerate(files):
        assert (int(f.attrs["rank"]), int(f.attrs["tp"]), int(f.attrs["format_version"])) == (r, tp, 2)
        assert f.attrs["dtype"] == "f32"
        assert len(f.keys()) == manifest["n_tensors"]
    n = 0
    # Fused projections: each rank's slice is [part_0 rows of rank r | part_1 ...] (format 2).
    fused = {t[0]: t[4] for t in convert_hf.sharding_table(c) if t[4] is not None}
    for name in files[0].keys():
        if name in fused:
            global_rows = sum(rows for _, rows in fused[name])
            lo = 0
            for part, rows in fused[name]:
                want = st.read(part).astype(np.float32)
                got = np.concatenate([f[name][()][lo:lo + rows // tp] for f in files], axis=0)
                assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (name, part)
                lo += rows // tp
            for f in files:
                assert int(f[name].attrs["split_dim"]) == 0, name
                assert int(f[name].attrs["global_shape"][0]) == global_rows, name
                assert f[name].shape[0] == lo, name
            n += 1
            continue
        want = st.read(name).astype(np.float32)
        parts = [f[name][()] for f in files]
        split = int(files[0][name].attrs["split_dim"])
        for f in files:
            assert list(f[name].attrs["global_shape"]) == list(want.shape), name
            assert int(f[name].attrs["split_dim"]) == split, name
            assert f[name].dtype == np.float32, name
        if split < 0:
            for p in parts:
                assert np.array_equal(p.view(np.uint32), want.view(np.uint32)), name
            continue
        got = np.concatenate(parts, axis=split)
        if got.shape[split] > want.shape[split]:  # vocab padding rows: zero
            assert split == 0 and np.all(got[want.shape[0]:] == 0), name
            got = got[:want.shape[0]]
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), name
        n += 1
    for f in files:
        f.close()
    print("tp=%d: %d tensors, %d split ones reassembled exactly" % (tp, manifest["n_tensors"], n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    for tp in (1, 2, 4):
        check(args.model, args.work, tp)


if __name__ == "__main__":
    main()
