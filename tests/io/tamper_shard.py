#!/usr/bin/python3
"""Damage one shard of a converted model in a chosen way, for the loader's refusal tests.

    tamper_shard.py MODEL_DIR RANK OP [ARGS...]

OPs: root-attr NAME VALUE | attr TENSOR NAME JSON | delete TENSOR | reshape TENSOR JSON_SHAPE |
     retype TENSOR NUMPY_DTYPE | add TENSOR | set TENSOR FLAT_INDEX VALUE (e.g. nan, inf, 1.5) |
     flipbit TENSOR
Afterwards the manifest's byte size and sha256 for that file are updated, so the loader reaches
the check under test instead of stopping at the size or checksum check; except for flipbit, which
flips the lowest bit of the tensor's first element in place and leaves the manifest alone (a file
damaged after conversion: same size, other bytes).
"""
import hashlib
import json
import os
import sys

import h5py
import numpy as np


def main():
    model_dir, rank, op, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    with open(os.path.join(model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    entry = manifest["files"][rank]
    path = os.path.join(model_dir, entry["path"])
    if op == "flipbit":
        with h5py.File(path, "r") as f:
            offset = f[args[0]].id.get_offset()
        with open(path, "r+b") as f:
            f.seek(offset)
            b = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([b ^ 1]))
        return
    with h5py.File(path, "r+") as f:
        if op == "set":
            tensor, index, value = args[0], int(args[1]), float(args[2])
            data = f[tensor][()]
            data.reshape(-1)[index] = value
            f[tensor][...] = data
        elif op == "root-attr":
            name, value = args
            f.attrs[name] = np.int64(value) if value.lstrip("-").isdigit() else value
        elif op == "attr":
            tensor, name, value = args
            f[tensor].attrs[name] = np.array(json.loads(value), dtype=np.int64)
        elif op == "delete":
            del f[args[0]]
        elif op == "reshape":
            tensor, shape = args[0], json.loads(args[1])
            ds = f[tensor]
            attrs = dict(ds.attrs)
            dtype = ds.dtype
            del f[tensor]
            new = f.create_dataset(tensor, data=np.zeros(shape, dtype=dtype))
            for k, v in attrs.items():
                new.attrs[k] = v
        elif op == "retype":
            tensor, dtype = args
            ds = f[tensor]
            attrs, data = dict(ds.attrs), ds[()]
            del f[tensor]
            new = f.create_dataset(tensor, data=data.astype(dtype))
            for k, v in attrs.items():
                new.attrs[k] = v
        elif op == "add":
            ds = f.create_dataset(args[0], data=np.zeros([4], dtype=np.float32))
            ds.attrs["global_shape"] = np.array([4], dtype=np.int64)
            ds.attrs["split_dim"] = np.int64(-1)
        else:
            sys.exit("unknown op " + op)
    entry["bytes"] = os.path.getsize(path)
    with open(path, "rb") as f:
        entry["sha256"] = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(model_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
