#!/usr/bin/python3
"""Convert a Hugging Face Llama / Mistral / Qwen3 / Qwen2 / Phi3 / Qwen3-MoE / Mixtral checkpoint
into tpinfer's shards.

    /usr/bin/python3 scripts/convert_hf.py --model HF_DIR --tp N --out OUT_DIR \
        [--dtype bf16|f16|f32|int8] [--int8-block 32|0] [--pp P | --pp-layers 10,10,8,8]

Writes OUT_DIR/rank{r}-of-{N}.h5 (one HDF5 file per tp rank holding only that rank's slice of
every tensor), OUT_DIR/manifest.json, and copies the tokenizer/config files found in HF_DIR.
Pipeline stages (--pp P, or an explicit --pp-layers split): OUT_DIR/stage{s}-of-{P}-rank{r}-of-{N}.h5
per stage s and tp rank r, each holding that stage's layers only (balanced by layer count, the
first n_layers % P stages one more), the embedding on the first stage, the final norm and lm_head
on the last (a tied lm_head: the embedding there too); the manifest records "pp" and "pp_layers"
(twin of src/model/pipeline_stages.cpp). Without them a directory is one stage.
Needs only numpy + h5py + the standard library (Debian: apt-get install python3-h5py
python3-numpy, then run with /usr/bin/python3). Safetensors are parsed here: 8-byte little-endian
header length, JSON header, raw little-endian data.

The conversion streams: one tensor is read (by seek) at a time, its slices are written to all N
open rank files, and it is dropped, so a 7B model converts in far less RAM than its size.

The sharding table below is the twin of src/model/sharding.cpp and the config parsing
(scripts/hf_config.py) the twin of src/model/model_config.cpp; `--print-sharding` dumps both as
JSON so tests/io can keep them in step. HDF5 layout: one root-level dataset per tensor, named by its HF name, with attributes
global_shape (int64[]) and split_dim (-1 replicated, 0 or 1); root attributes format_version,
rank, tp, dtype. f32 is stored as float32, bf16/f16 as uint16 bit patterns.

--dtype int8 stores the linear weights (q/k/v/o/gate/up/down and an untied lm_head) as symmetric
int8 with float32 scales, `<name>_scales` [rows, n_groups]: one scale per output row and block of
32 inputs (--int8-block 32, the default), or per output row (--int8-block 0, per channel). Each
rank's slice is quantized on its own, so a row-parallel weight (o/down: the input dim is split)
gets per-channel scales of its own slice and blocks that never straddle two ranks. The embedding
(a lookup table, which a tied lm_head shares), norms and biases keep the checkpoint's float dtype
(`int8.float_dtype` in the manifest; f32 for an f32 checkpoint, bf16 for bf16). See docs/INT8.md.

Fused projections (format version 2): each layer stores q/k/v as ONE tensor
self_attn.qkv_proj and gate/up as ONE tensor mlp.gate_up_proj (weights and biases), and each
rank's slice is its own rows of every part, contiguous: [q_r | k_r | v_r] and [gate_r | up_r]
(q_r = rows [r * q/tp, (r + 1) * q/tp) of q_proj), so the engine runs one matmul per fused
projection. Phi3 checkpoints, which fuse them as [q | k | v] over all heads, are split first and
laid out the same way. A directory written by an older converter (format_version 1) is refused by
the engine with the command that converts it again.

Mixture-of-experts checkpoints: the table names a sparse layer's router mlp.gate and its experts
mlp.experts.{e}.gate_proj / up_proj / down_proj (Qwen3-MoE's Hub names). Mixtral's
block_sparse_moe.gate and block_sparse_moe.experts.{e}.w1 / w3 / w2 are renamed to them, and a
checkpoint saved with transformers' fused in-memory layout (mlp.experts.gate_up_proj [E, 2I, H],
mlp.experts.down_proj [E, H, I]) is read expert by expert from those tensors. Each expert is split
like the dense MLP (gate/up by rows, down by columns); the router is replicated and stays float
under --dtype int8 (expert weights are int8).
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import struct
import sys
import time

try:
    import h5py
    import numpy as np
except ImportError as exc:  # pragma: no cover - depends on the interpreter
    sys.exit("convert_hf.py: missing %s: apt-get install python3-h5py python3-numpy and run with "
             "/usr/bin/python3" % (exc.name or exc))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_config import (  # noqa: E402  (config.json parsing: the twin of model_config.cpp)
    MOE_ARCHS, SUPPORTED_ARCHITECTURES, ConvertError, check_tp, is_moe_layer, parse_hf_config)

FORMAT = "tpinfer-shards"
FORMAT_VERSION = 2  # 2: fused qkv_proj / gate_up_proj (see sharding_table)
# Files copied beside the shards when present (the tokenizer is optional: tests feed ids).
COPIED_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "tokenizer.model", "chat_template.jinja"]
# Safetensors dtype -> (numpy dtype of the raw data, bytes per element).
SOURCE_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2)}
# Tensors a checkpoint may carry that the engine recomputes.
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)
CHUNK = 1 << 22  # elements per conversion chunk (bounds the temporaries of bf16 rounding)




# --- sharding table (twin of src/model/sharding.cpp) ------------------------------------------

def sharding_table(c):
    """[(name, global_shape, split_dim, vocab_padded, parts)] in file order == load order. parts
    is None, or for a fused projection the [(HF name, global rows)] whose rank slices each rank's
    slice concatenates, in order."""
    h, v, inter = c["hidden_size"], c["vocab_size"], c["intermediate_size"]
    q_dim, kv_dim = c["n_heads"] * c["head_dim"], c["n_kv_heads"] * c["head_dim"]
    t = [("model.embed_tokens.weight", [v, h], 0, True, None)]
    for layer in range(c["n_layers"]):
        p = "model.layers.%d." % layer
        t.append((p + "input_layernorm.weight", [h], -1, False, None))
        # A column-parallel bias is split with its weight's rows; a row-parallel bias is
        # replicated and added once, after the all-reduce (never tp times).
        def column(name, out, bias):
            t.append((p + name + ".weight", [out, h], 0, False, None))
            if bias:
                t.append((p + name + ".bias", [out], 0, False, None))

        def row(name, n_in, bias):
            t.append((p + name + ".weight", [h, n_in], 1, False, None))
            if bias:
                t.append((p + name + ".bias", [h], -1, False, None))

        def fused(name, of, bias):
            """One column-parallel tensor whose rank slice is [part_0 of rank r | part_1 ...]."""
            rows = sum(n for _, n in of)
            t.append((p + name + ".weight", [rows, h], 0, False,
                      [(p + part + ".weight", n) for part, n in of]))
            if bias:
                t.append((p + name + ".bias", [rows], 0, False,
                          [(p + part + ".bias", n) for part, n in of]))

        fused("self_attn.qkv_proj", [("self_attn.q_proj", q_dim), ("self_attn.k_proj", kv_dim),
                                     ("self_attn.v_proj", kv_dim)], c["qkv_bias"])
        row("self_attn.o_proj", q_dim, c["o_bias"])
        if c["qk_norm"]:
            t.append((p + "self_attn.q_norm.weight", [c["head_dim"]], -1, False, None))
            t.append((p + "self_attn.k_norm.weight", [c["head_dim"]], -1, False, None))
        t.append((p + "post_attention_layernorm.weight", [h], -1, False, None))
        if is_moe_layer(c, layer):
            # Replicated router; each expert split like the dense MLP below (not fused: the MoE
            # kernels read gate and up as two stacked tensors).
            t.append((p + "mlp.gate.weight", [c["n_experts"], h], -1, False, None))
            for e in range(c["n_experts"]):
                x = "mlp.experts.%d." % e
                column(x + "gate_proj", c["moe_intermediate_size"], False)
                column(x + "up_proj", c["moe_intermediate_size"], False)
                row(x + "down_proj", c["moe_intermediate_size"], False)
            continue
        fused("mlp.gate_up_proj", [("mlp.gate_proj", inter), ("mlp.up_proj", inter)],
              c["mlp_bias"])
        row("mlp.down_proj", inter, c["mlp_bias"])
    t.append(("model.norm.weight", [h], -1, False, None))
    if not c["tie_word_embeddings"]:
        t.append(("lm_head.weight", [v, h], 0, True, None))
    return t


def source_tensors(table):
    """[(HF name, global shape)] the table reads from a checkpoint: a fused tensor's parts."""
    out = []
    for name, shape, _, _, parts in table:
        if parts is None:
            out.append((name, shape))
        else:
            out.extend((part, [n] + shape[1:]) for part, n in parts)
    return out


def int8_quantized(name, shape):
    """Twin of int8_quantized() in src/model/sharding.cpp: every 2-D weight but the embedding and
    the MoE routers."""
    return (len(shape) == 2 and name != "model.embed_tokens.weight"
            and not name.endswith(".mlp.gate.weight"))


def int8_scales_name(name):
    return name + "_scales"


def quantize_int8(x, block):
    """float32 [rows, cols] -> (int8 [rows, cols], float32 scales [rows, ceil(cols / g)]) with
    g = block, or cols when block is 0 (per channel): scale = max|x| / 127 over each group,
    q = round-half-even(x / scale) (0 where the group is all zeros)."""
    rows, cols = x.shape
    g = block if block > 0 else cols
    ng = -(-cols // g)
    q = np.empty((rows, cols), dtype=np.int8)
    scales = np.empty((rows, ng), dtype=np.float32)
    step = max(1, CHUNK // max(cols, 1))
    for r0 in range(0, rows, step):
        c = np.asarray(x[r0:r0 + step], dtype=np.float32)
        pad = ng * g - cols
        if pad:
            c = np.concatenate([c, np.zeros((c.shape[0], pad), dtype=np.float32)], axis=1)
        c = c.reshape(c.shape[0], ng, g)
        amax = np.abs(c).max(axis=2)
        s = (amax / np.float32(127)).astype(np.float32)
        safe = np.where(s > 0, s, np.float32(1))
        qc = np.clip(np.rint(c / safe[:, :, None]), -127, 127).astype(np.int8)
        q[r0:r0 + step] = qc.reshape(c.shape[0], ng * g)[:, :cols]
        scales[r0:r0 + step] = s
    return q, scales


def local_shape(global_shape, split, vocab_padded, tp):
    s = list(global_shape)
    if split >= 0:
        s[split] = -(-s[split] // tp) if vocab_padded else s[split] // tp
    return s


# --- safetensors ------------------------------------------------------------------------------

class SafetensorsIndex:
    """Headers of model.safetensors or of every shard named by model.safetensors.index.json."""

    def __init__(self, model_dir):
        self.entries = {}  # name -> (path, absolute offset, dtype, shape, nbytes)
        self.splits = {}  # name -> (fused name, fused entry, first row, end row)
        self._fused_cache = (None, None)
        index = os.path.join(model_dir, "model.safetensors.index.json")
        single = os.path.join(model_dir, "model.safetensors")
        if os.path.exists(index):
            with open(index) as f:
                weight_map = json.load(f).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ConvertError("%s: no 'weight_map' object" % index)
            files = sorted(set(weight_map.values()))
        elif os.path.exists(single):
            weight_map, files = None, ["model.safetensors"]
        else:
            raise ConvertError("%s: no model.safetensors or model.safetensors.index.json "
                               "(only safetensors checkpoints are supported)" % model_dir)
        self.files = files
        for fname in files:
            path = os.path.join(model_dir, fname)
            for name, entry in self._read_header(path).items():
                if weight_map is not None and weight_map.get(name) != fname:
                    continue
                self.entries[name] = entry
        if weight_map is not None:
            for name, fname in weight_map.items():
                if name not in self.entries:
                    raise ConvertError("%s: index names %s in %s but that file does not hold it"
                                       % (index, name, fname))

    @staticmethod
    def _read_header(path):
        if not os.path.exists(path):
            raise ConvertError("%s: not found (named by model.safetensors.index.json)" % path)
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ConvertError("%s: not a safetensors file (shorter than 8 bytes)" % path)
            (n,) = struct.unpack("<Q", raw)
            if n > size - 8 or n > 100 << 20:
                raise ConvertError("%s: not a safetensors file (header length %d)" % (path, n))
            try:
                header = json.loads(f.read(n))
            except ValueError as exc:
                raise ConvertError("%s: bad safetensors JSON header: %s" % (path, exc))
        data_start = 8 + n
        out = {}
        for name, e in header.items():
            if name == "__metadata__":
                continue
            dtype, shape, (begin, end) = e["dtype"], e["shape"], e["data_offsets"]
            numel = 1
            for d in shape:
                numel *= d
            itemsize = SOURCE_DTYPES.get(dtype, (None, None))[1]
            if itemsize is not None and end - begin != numel * itemsize:
                raise ConvertError("%s: tensor %s: %d data bytes for shape %s of %s"
                                   % (path, name, end - begin, shape, dtype))
            if data_start + end > size:
                raise ConvertError("%s: tensor %s ends at byte %d but the file has %d bytes "
                                   "(truncated?)" % (path, name, data_start + end, size))
            out[name] = (path, data_start + begin, dtype, list(shape), end - begin)
        return out

    def split_fused(self, fused, parts):
        """Replaces a fused tensor (Phi3 qkv_proj, gate_up_proj) by row slices of it: parts is
        [(name, rows)] in order. The slices read the fused tensor once (cached)."""
        if fused not in self.entries:
            return
        path, offset, dtype, shape, nbytes = self.entries.pop(fused)
        if shape[0] != sum(r for _, r in parts):
            raise ConvertError("%s: tensor %s has %d rows but config.json implies %s = %d"
                               % (path, fused, shape[0], " + ".join(str(r) for _, r in parts),
                                  sum(r for _, r in parts)))
        lo = 0
        for name, rows in parts:
            self.splits[name] = (fused, (path, offset, dtype, shape, nbytes), lo, lo + rows)
            self.entries[name] = (path, offset, dtype, [rows] + shape[1:],
                                  nbytes // shape[0] * rows)
            lo += rows

    def rename(self, old, new):
        if old in self.entries:
            if new in self.entries:
                raise ConvertError("checkpoint holds both %s and %s" % (old, new))
            self.entries[new] = self.entries.pop(old)

    def split_stacked(self, stacked, parts):
        """Replaces a 3-D tensor [E, rows, cols] (transformers' fused experts) by views of it:
        parts is [(name, expert, first row, rows)]; each view is contiguous, read on its own."""
        if stacked not in self.entries:
            return
        path, offset, dtype, shape, nbytes = self.entries.pop(stacked)
        if len(shape) != 3:
            raise ConvertError("%s: tensor %s has shape %s, expected [experts, rows, cols]"
                               % (path, stacked, shape))
        item = SOURCE_DTYPES.get(dtype, (None, 1))[1]
        for name, e, lo, rows in parts:
            if e >= shape[0] or lo + rows > shape[1]:
                raise ConvertError("%s: tensor %s has shape %s but config.json implies expert %d "
                                   "rows %d..%d" % (path, stacked, shape, e, lo, lo + rows))
            start = offset + ((e * shape[1] + lo) * shape[2]) * item
            self.entries[name] = (path, start, dtype, [rows, shape[2]], rows * shape[2] * item)

    def read(self, name):
        """The tensor's raw data as a numpy array of its source type (F32/F16/BF16->uint16)."""
        if name in self.splits:
            fused, entry, lo, hi = self.splits[name]
            if self._fused_cache[0] != fused:
                self._fused_cache = (fused, self._read_entry(fused, entry))
            return self._fused_cache[1][lo:hi]
        return self._read_entry(name, self.entries[name])

    @staticmethod
    def _read_entry(name, entry):
        path, offset, dtype, shape, nbytes = entry
        arr = np.empty(nbytes // SOURCE_DTYPES[dtype][1], dtype=SOURCE_DTYPES[dtype][0])
        with open(path, "rb") as f:
            f.seek(offset)
            got = f.readinto(memoryview(arr.view(np.uint8)))
        if got != nbytes:
            raise ConvertError("%s: tensor %s: short read (%d of %d bytes)" % (path, name, got, nbytes))
        return arr.reshape(shape)


# --- dtype conversion ---------------------------------------------------------------------------

def f32_to_bf16(x):
    """float32 array -> uint16 bf16 bit patterns, round to nearest even (NaN stays NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).reshape(-1).view(np.uint32)
    out = np.empty(u.shape, dtype=np.uint16)
    for s in range(0, u.size, CHUNK):
        c = u[s:s + CHUNK]
        r = (c + (np.uint32(0x7FFF) + ((c >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
        nan = (c & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
        if nan.any():
            r[nan] = (c[nan] >> np.uint32(16)) | np.uint32(0x40)
        out[s:s + CHUNK] = r.astype(np.uint16)
    return out.reshape(np.shape(x))


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << np.uint32(16)).view(np.float32)


def convert(arr, src, dst):
    """Raw source array (F32 / F16 / BF16-as-uint16) -> stored array for dst (f32 | f16 | bf16)."""
    if src == "F32":
        f32 = arr
    elif src == "F16":
        if dst == "f16":
            return arr.view(np.uint16)
        f32 = arr.astype(np.float32)
    else:  # BF16
        if dst == "bf16":
            return arr
        f32 = bf16_to_f32(arr)
    if dst == "f32":
        return f32
    if dst == "f16":
        with np.errstate(over="ignore"):
            return f32.astype("<f2").view(np.uint16)
    return f32_to_bf16(f32)


# --- conversion -------------------------------------------------------------------------------

def load_json(path, required):
    if not os.path.exists(path):
        if required:
            raise ConvertError("%s: not found" % path)
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as exc:
        raise ConvertError("%s: invalid JSON: %s" % (path, exc))


def read_model(model_dir):
    config_path = os.path.join(model_dir, "config.json")
    config = load_json(config_path, True)
    gen = load_json(os.path.join(model_dir, "generation_config.json"), False)
    return config, gen, parse_hf_config(config, gen, config_path)


def check_tensors(c, table, st, model_dir):
    """Every table tensor present with its shape and a supported dtype; nothing unexpected."""
    sources = source_tensors(table)
    names = {n for n, _ in sources}
    for name in sorted(st.entries):
        if name in names or name.endswith(IGNORED_SUFFIXES):
            continue
        if name == "lm_head.weight" and c["tie_word_embeddings"]:
            continue  # tied: the engine uses the embedding shard
        if name.endswith(".bias"):
            raise ConvertError("%s: tensor %s: a bias that config.json does not announce (%s "
                               "has none there)" % (model_dir, name, c["arch"]))
        raise ConvertError("%s: unexpected tensor %s: not in the %s sharding table (the engine "
                           "would ignore it)" % (model_dir, name, c["arch"]))
    for name, shape in sources:
        if name not in st.entries:
            raise ConvertError("%s: missing tensor %s%s (expected shape %s; checked %s)"
                               % (model_dir, name, hub_alias(c, name), shape, ", ".join(st.files)))
        _, _, dtype, found, _ = st.entries[name]
        if found != shape:
            raise ConvertError("%s: tensor %s has shape %s but config.json implies %s"
                               % (model_dir, name, found, shape))
        if dtype not in SOURCE_DTYPES:
            raise ConvertError("%s: tensor %s has dtype %s; supported: F32, F16, BF16"
                               % (model_dir, name, dtype))


def hub_alias(c, name):
    """' (Mixtral: <its Hub name>)' for a table name that rename_moe maps from another name."""
    if c["arch"] != "mixtral":
        return ""
    m = re.fullmatch(r"(model\.layers\.\d+\.)mlp\.(gate\.weight|experts\.(\d+)\.(\w+)\.weight)",
                     name)
    if not m:
        return ""
    if m.group(3) is None:
        return " (Mixtral: %sblock_sparse_moe.gate.weight)" % m.group(1)
    w = {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}[m.group(4)]
    return " (Mixtral: %sblock_sparse_moe.experts.%s.%s.weight)" % (m.group(1), m.group(3), w)


def split_phi3(c, st):
    """Phi3: qkv_proj -> q/k/v_proj and gate_up_proj -> gate/up_proj (row slices), per layer."""
    if c["arch"] != "phi3":
        return
    q_dim, kv_dim = c["n_heads"] * c["head_dim"], c["n_kv_heads"] * c["head_dim"]
    inter = c["intermediate_size"]
    for layer in range(c["n_layers"]):
        p = "model.layers.%d." % layer
        st.split_fused(p + "self_attn.qkv_proj.weight",
                       [(p + "self_attn.q_proj.weight", q_dim), (p + "self_attn.k_proj.weight", kv_dim),
                        (p + "self_attn.v_proj.weight", kv_dim)])
        st.split_fused(p + "mlp.gate_up_proj.weight",
                       [(p + "mlp.gate_proj.weight", inter), (p + "mlp.up_proj.weight", inter)])


def rename_moe(c, st):
    """MoE checkpoints -> the table's names: Mixtral's block_sparse_moe (w1 gate, w3 up, w2 down)
    and transformers' fused expert tensors are mapped onto mlp.gate / mlp.experts.{e}.*_proj."""
    if c["arch"] not in MOE_ARCHS:
        return
    inter, h = c["moe_intermediate_size"], c["hidden_size"]
    for layer in range(c["n_layers"]):
        p = "model.layers.%d." % layer
        if c["arch"] == "mixtral":
            st.rename(p + "block_sparse_moe.gate.weight", p + "mlp.gate.weight")
            for e in range(c["n_experts"]):
                for old, new in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
                    st.rename(p + "block_sparse_moe.experts.%d.%s.weight" % (e, old),
                              p + "mlp.experts.%d.%s.weight" % (e, new))
            for fused in ("gate_up_proj", "down_proj"):
                st.rename(p + "block_sparse_moe.experts." + fused, p + "mlp.experts." + fused)
        x = p + "mlp.experts."
        st.split_stacked(x + "gate_up_proj",
                         [(x + "%d.%s.weight" % (e, n), e, lo, inter)
                          for e in range(c["n_experts"])
                          for n, lo in (("gate_proj", 0), ("up_proj", inter))])
        st.split_stacked(x + "down_proj",
                         [(x + "%d.down_proj.weight" % e, e, 0, h) for e in range(c["n_experts"])])


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def shard_name(rank, tp, stage=0, pp=1):
    name = "rank%d-of-%d.h5" % (rank, tp)
    return name if pp == 1 else "stage%d-of-%d-%s" % (stage, pp, name)


def stage_split(n_layers, pp, pp_layers):
    """Layers per stage (twin of StageSplit in src/model/pipeline_stages.cpp)."""
    if pp_layers is not None:
        if pp is not None and pp != len(pp_layers):
            raise ConvertError("--pp %d but --pp-layers lists %d stages" % (pp, len(pp_layers)))
        if any(n < 1 for n in pp_layers):
            raise ConvertError("--pp-layers %s: every stage needs at least one layer"
                               % ",".join(map(str, pp_layers)))
        if sum(pp_layers) != n_layers:
            raise ConvertError("--pp-layers %s covers %d layers, the model has %d"
                               % (",".join(map(str, pp_layers)), sum(pp_layers), n_layers))
        return list(pp_layers)
    pp = 1 if pp is None else pp
    if pp < 1:
        raise ConvertError("--pp must be >= 1, found %d" % pp)
    if pp > n_layers:
        raise ConvertError("--pp %d is more pipeline stages than the model's %d layers (every "
                           "stage runs at least one layer); use --pp <= %d"
                           % (pp, n_layers, n_layers))
    return [n_layers // pp + (1 if i < n_layers % pp else 0) for i in range(pp)]


def stage_holds(split, stage, tied, name):
    """Whether tensor `name` belongs to stage `stage` (twin of StageRange::holds)."""
    last = stage == len(split) - 1
    if name == "model.embed_tokens.weight":
        return stage == 0 or (last and tied)
    if name in ("model.norm.weight", "lm_head.weight"):
        return last
    m = re.match(r"model\.layers\.(\d+)\.", name)
    if not m:
        return True
    begin = sum(split[:stage])
    return begin <= int(m.group(1)) < begin + split[stage]


def convert_model(model_dir, out_dir, tp, dtype, quiet, int8_block=32, pp=None, pp_layers=None):
    config, _, c = read_model(model_dir)
    check_tp(c, tp)
    stages = stage_split(c["n_layers"], pp, pp_layers)
    pp = len(stages)
    st = SafetensorsIndex(model_dir)
    split_phi3(c, st)
    rename_moe(c, st)
    if "lm_head.weight" not in st.entries and not c["tie_word_embeddings"]:
        # No lm_head stored: transformers ties it to the embedding.
        c["tie_word_embeddings"] = True
    table = sharding_table(c)
    check_tensors(c, table, st, model_dir)
    source_dtypes = sorted({st.entries[n][2] for n, _ in source_tensors(table)})
    own = {"F32": "f32", "F16": "f16", "BF16": "bf16"}[source_dtypes[0]] \
        if len(source_dtypes) == 1 else "bf16"
    if dtype is None:
        dtype = own
    if int8_block not in (0, 32):
        raise ConvertError("--int8-block must be 32 (blocks of 32 inputs) or 0 (per output "
                           "channel), found %d" % int8_block)
    # int8: the tensors that stay float keep the checkpoint's own dtype.
    float_dtype = own if dtype == "int8" else dtype

    if os.path.realpath(out_dir) == os.path.realpath(model_dir):
        raise ConvertError("--out must be a different directory from --model (%s)" % model_dir)
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, "manifest.json")
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # a crash below must not leave an old manifest over new shards
    # files[s * tp + r]: stage s, tp rank r.
    names = [shard_name(r, tp, s, pp) for s in range(pp) for r in range(tp)]
    for fname in sorted(os.listdir(out_dir)):
        # Shards of an earlier conversion at another tp or pp would sit beside the new ones
        # unlisted.
        if re.fullmatch(r"(stage\d+-of-\d+-)?rank(\d+)-of-(\d+)\.h5", fname) and \
                fname not in names:
            os.remove(os.path.join(out_dir, fname))
            if not quiet:
                print("removed stale %s" % fname, file=sys.stderr)
    paths = [os.path.join(out_dir, n) for n in names]
    files = [h5py.File(p, "w") for p in paths]
    tied = c["tie_word_embeddings"]
    total_in = sum(st.entries[n][4] for n, _ in source_tensors(table))
    written = 0
    start = time.time()
    try:
        for fi, f in enumerate(files):
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.attrs["rank"] = np.int64(fi % tp)
            f.attrs["tp"] = np.int64(tp)
            if pp > 1:
                f.attrs["stage"] = np.int64(fi // tp)
                f.attrs["pp"] = np.int64(pp)
            f.attrs["dtype"] = dtype
            if dtype == "int8":
                f.attrs["int8_group_size"] = np.int64(int8_block)
        for i, (name, shape, split, padded, fused_parts) in enumerate(table):
            quantized = dtype == "int8" and int8_quantized(name, shape)
            # int8: quantized from float32, each rank's slice on its own (below).
            tdtype = "f32" if quantized else float_dtype
            store_type = np.float32 if tdtype == "f32" else np.uint16
            local = local_shape(shape, split, padded, tp)
            if fused_parts is not None:
                # Fused projection: every part read once, each rank's slice put together as
                # [part_0 rows of rank r | part_1 rows of rank r | ...].
                full = [(convert(st.read(pn), st.entries[pn][2], tdtype), n // tp)
                        for pn, n in fused_parts]
            else:
                full = convert(st.read(name), st.entries[name][2], tdtype)
            for fi, f in enumerate(files):  # fi = stage * tp + r
                r = fi % tp
                if not stage_holds(stages, fi // tp, tied, name):
                    continue
                if fused_parts is not None:
                    part = np.concatenate([x[r * n:(r + 1) * n] for x, n in full], axis=0)
                elif split < 0:
                    part = full
                else:
                    n = local[split]
                    lo, hi = r * n, min((r + 1) * n, shape[split])
                    part = full[lo:hi] if split == 0 else full[:, lo:hi]
                    if part.shape[split] != n:  # vocab padding: zero rows up to ceil(V/tp)
                        padded_part = np.zeros(local, dtype=store_type)
                        padded_part[:part.shape[0]] = part
                        part = padded_part
                if quantized:
                    part, scales = quantize_int8(part, int8_block)
                    sds = f.create_dataset(int8_scales_name(name), data=scales)
                    sds.attrs["group_size"] = np.int64(int8_block)
                    written += scales.size * scales.itemsize
                ds = f.create_dataset(name, data=np.ascontiguousarray(
                    part, dtype=np.int8 if quantized else store_type))
                ds.attrs["global_shape"] = np.array(shape, dtype=np.int64)
                ds.attrs["split_dim"] = np.int64(split)
                written += part.size * part.itemsize
            del full
            if not quiet:
                elapsed = max(time.time() - start, 1e-9)
                print("[%d/%d] %s %s -> %d x %s  %.1f MB written  %.1f MB/s"
                      % (i + 1, len(table), name, shape, tp, local, written / 1e6,
                         written / 1e6 / elapsed), file=sys.stderr, flush=True)
    finally:
        for f in files:
            f.close()
    elapsed = time.time() - start

    copied = []
    for fname in COPIED_FILES:
        src = os.path.join(model_dir, fname)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(out_dir, fname))
            copied.append(fname)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": (config.get("architectures") or [None])[0]
                        or {v: k for k, v in SUPPORTED_ARCHITECTURES.items()}[c["arch"]],
        "config": c,
        "dtype": dtype,
        "tp": tp,
        "n_tensors": len(table),
        "files": [dict({"rank": i % tp, "path": names[i], "bytes": os.path.getsize(p),
                        "sha256": sha256_file(p)}, **({"stage": i // tp} if pp > 1 else {}))
                  for i, p in enumerate(paths)],
        "tokenizer_files": [f for f in copied if f.startswith("tokenizer")
                            or f in ("special_tokens_map.json", "chat_template.jinja")],
        "source": {"dir": os.path.abspath(model_dir), "weights": st.files,
                   "dtype": "/".join(source_dtypes)},
        "converter": {"script": "scripts/convert_hf.py",
                      "created": datetime.datetime.now(datetime.timezone.utc)
                      .strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    if pp > 1:
        manifest["pp"] = pp
        manifest["pp_layers"] = stages
    if dtype == "int8":
        manifest["int8"] = {"group_size": int8_block, "float_dtype": float_dtype,
                            "scale_dtype": "f32"}
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(tmp, manifest_path)
    if not quiet:
        print("converted %d tensors (%.1f MB of %s in -> %.1f MB of %s out) in %.2f s, %.1f MB/s; "
              "wrote %s" % (len(table), total_in / 1e6, "/".join(source_dtypes), written / 1e6,
                            dtype, elapsed, written / 1e6 / max(elapsed, 1e-9), manifest_path),
              file=sys.stderr)
    return manifest


def print_sharding(model_dir, tp):
    """The parsed config and the sharding table with local shapes, as JSON on stdout."""
    _, _, c = read_model(model_dir)
    check_tp(c, tp)
    out = {"config": c, "tp": tp, "tensors": [
        {"name": name, "global_shape": shape, "split_dim": split, "vocab_padded": padded,
         "local_shape": local_shape(shape, split, padded, tp),
         "parts": [[pn, n] for pn, n in parts] if parts is not None else None}
        for name, shape, split, padded, parts in sharding_table(c)]}
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


def is_current(out_dir):
    """Whether out_dir/manifest.json exists and has this converter's format version."""
    try:
        with open(os.path.join(out_dir, "manifest.json")) as f:
            return json.load(f).get("format_version") == FORMAT_VERSION
    except (OSError, ValueError, AttributeError):
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="Hugging Face model directory (required)")
    ap.add_argument("--tp", type=int, help="tensor-parallel size (ranks) (required)")
    ap.add_argument("--out", help="output directory (created)")
    ap.add_argument("--dtype", choices=["bf16", "f16", "f32", "int8"],
                    help="stored dtype (default: the checkpoint's own, bf16 when mixed); int8: "
                    "int8 linear weights with f32 scales, the rest in the checkpoint's dtype")
    ap.add_argument("--int8-block", type=int, default=32, choices=[0, 32],
                    help="--dtype int8: one scale per output row and block of 32 inputs (32, "
                    "default), or per output row (0)")
    ap.add_argument("--pp", type=int,
                    help="pipeline stages: layers split across them, balanced by layer count "
                    "(default 1)")
    ap.add_argument("--pp-layers",
                    help="explicit layers per stage, e.g. 10,10,8,8 (sums to the model's layers)")
    ap.add_argument("--print-sharding", action="store_true",
                    help="print the parsed config and sharding table as JSON and exit")
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    ap.add_argument("--is-current", metavar="OUT_DIR",
                    help="exit 0 when OUT_DIR holds a conversion in this converter's format "
                    "version (scripts reuse it), 1 when it must be converted (again)")
    args = ap.parse_args(argv)
    if args.is_current is not None:
        return 0 if is_current(args.is_current) else 1
    if args.model is None or args.tp is None:
        ap.error("the following arguments are required: --model, --tp")
    try:
        if args.print_sharding:
            print_sharding(args.model, args.tp)
            return 0
        if not args.out:
            raise ConvertError("--out OUT_DIR is required")
        pp_layers = None
        if args.pp_layers is not None:
            try:
                pp_layers = [int(x) for x in args.pp_layers.split(",")]
            except ValueError:
                raise ConvertError("--pp-layers must be comma-separated layer counts such as "
                                   "10,10,8,8, found '%s'" % args.pp_layers)
        convert_model(args.model, args.out, args.tp, args.dtype, args.quiet, args.int8_block,
                      args.pp, pp_layers)
    except ConvertError as exc:
        print("convert_hf.py: error: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
