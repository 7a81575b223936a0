"""The Hugging Face config.json as tpinfer reads it: the converter's twin of
src/model/model_config.cpp (ModelConfig::from_hf / to_manifest / check_tp). parse_hf_config turns
config.json (+ generation_config.json) into the manifest's "config" dict, refusing what the
engine does not support with one line (ConvertError) that names the key; check_tp /
valid_tp_sizes say which tp the model allows. Imported by scripts/convert_hf.py; standard
library only."""

import json


SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen2ForCausalLM": "qwen2",
    "Phi3ForCausalLM": "phi3",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "MixtralForCausalLM": "mixtral",
}
MOE_ARCHS = ("qwen3_moe", "mixtral")
SUPPORTED_ROPE = ["linear", "dynamic", "llama3", "yarn", "longrope"]
SUPPORTED_LIST = ", ".join(SUPPORTED_ARCHITECTURES)


class ConvertError(Exception):
    """A refusal: printed as one line, exit status 1."""


# --- config (twin of ModelConfig::from_hf / to_manifest / check_tp) ---------------------------

def _present(j, key):
    return isinstance(j, dict) and j.get(key) is not None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _get_int(j, key, source):
    if not _present(j, key):
        raise ConvertError("%s: missing key '%s'" % (source, key))
    v = j[key]
    if not _is_int(v):
        raise ConvertError("%s: key '%s' must be an integer, found %s" % (source, key, json.dumps(v)))
    return v


def _get_positive(j, key, source):
    v = _get_int(j, key, source)
    # Every size of a real model is far below 2**24; the cap keeps products of two sizes (and
    # the C++ twin's vocab_size + tp - 1) from overflowing.
    if v <= 0 or v > 2**24:
        raise ConvertError("%s: key '%s' must be a positive integer up to %d, found %d"
                           % (source, key, 2**24, v))
    return v


def _get_number(j, key, source):
    v = j[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConvertError("%s: key '%s' must be a number, found %s" % (source, key, json.dumps(v)))
    return float(v)


def _add_token_ids(j, key, source, out):
    if not _present(j, key):
        return
    v = j[key]
    for e in (v if isinstance(v, list) else [v]):
        if not _is_int(e):
            raise ConvertError("%s: key '%s' must be an integer or a list of integers, found %s"
                               % (source, key, json.dumps(v)))
        if e not in out:
            out.append(e)


def _get_bool(j, key, source):
    v = j[key]
    if not isinstance(v, bool):
        raise ConvertError("%s: key '%s' must be true or false, found %s" % (source, key, json.dumps(v)))
    return v


def _number_or_none(r, key, source):
    return _get_number(r, key, source) if _present(r, key) else None


def _factor_list(r, key, source):
    v = r.get(key)
    if not isinstance(v, list) or any(isinstance(e, bool) or not isinstance(e, (int, float))
                                      for e in v):
        raise ConvertError("%s: key '%s' must be a list of numbers" % (source, key))
    return [float(e) for e in v]


def parse_rope(config, max_pos, head_dim, source):
    """rope_scaling / rope_parameters -> the manifest's normalized "rope_scaling" (None = plain).

    Read as transformers' standardize_rope_params() does (twin of parse_rope in
    src/model/model_config.cpp); values transformers derives when absent stay None."""
    out = None
    for key in ("rope_scaling", "rope_parameters"):
        if not _present(config, key):
            continue
        r = config[key]
        src = "%s %s" % (source, key)
        if not isinstance(r, dict):
            raise ConvertError("%s: key '%s' must be an object or null, found %s"
                               % (source, key, json.dumps(r)))
        if _present(r, "rope_type"):
            kind = r["rope_type"]
        elif _present(r, "type"):
            kind = r["type"]
        else:
            kind = "unnamed" if key == "rope_scaling" else "default"
        if _present(r, "partial_rotary_factor") and \
                _get_number(r, "partial_rotary_factor", src) != 1.0:
            raise ConvertError("%s: partial_rotary_factor %s is not supported (RoPE over the whole "
                               "head only)" % (src, json.dumps(r["partial_rotary_factor"])))
        if kind == "default":
            continue
        if kind not in SUPPORTED_ROPE:
            raise ConvertError("%s: rope_scaling type '%s' is not implemented; supported: default, %s"
                               % (source, kind, ", ".join(SUPPORTED_ROPE)))
        o = {"rope_type": kind}
        if kind in ("linear", "dynamic", "llama3"):
            if not _present(r, "factor"):
                raise ConvertError("%s: missing key 'factor'" % src)
            o["factor"] = _get_number(r, "factor", src)
        else:
            o["factor"] = _number_or_none(r, "factor", src)
        if o["factor"] is not None and (o["factor"] < 0 or (o["factor"] == 0 and kind in
                                                            ("linear", "dynamic", "llama3"))):
            raise ConvertError("%s: key 'factor' must be positive, found %s" % (src, o["factor"]))
        if o["factor"] == 0.0:
            o["factor"] = None
        if kind in ("llama3", "yarn", "longrope"):
            if _present(config, "original_max_position_embeddings"):
                o["original_max_position_embeddings"] = _get_positive(
                    config, "original_max_position_embeddings", source)
            elif _present(r, "original_max_position_embeddings"):
                o["original_max_position_embeddings"] = _get_positive(
                    r, "original_max_position_embeddings", src)
            else:
                o["original_max_position_embeddings"] = max_pos
        if kind == "llama3":
            for k in ("low_freq_factor", "high_freq_factor"):
                if not _present(r, k):
                    raise ConvertError("%s: missing key '%s'" % (src, k))
                o[k] = _get_number(r, k, src)
            if o["low_freq_factor"] == o["high_freq_factor"]:
                raise ConvertError("%s: high_freq_factor must differ from low_freq_factor" % src)
        if kind in ("yarn", "longrope"):
            o["attention_factor"] = _number_or_none(r, "attention_factor", src) or None
        if kind == "yarn":
            for k in ("beta_fast", "beta_slow", "mscale", "mscale_all_dim"):
                o[k] = _number_or_none(r, k, src) or None
            o["truncate"] = _get_bool(r, "truncate", src) if "truncate" in r else True
        if kind == "longrope":
            o["short_factor"] = _factor_list(r, "short_factor", src)
            o["long_factor"] = _factor_list(r, "long_factor", src)
            for k in ("short_factor", "long_factor"):
                if len(o[k]) != head_dim // 2:
                    raise ConvertError("%s: short_factor and long_factor must have head_dim/2 = %d "
                                       "entries, found %d" % (src, head_dim // 2, len(o[k])))
        out = o
    return out


def parse_hf_config(config, generation_config, source):
    """HF config.json (+ generation_config.json or None) -> the manifest's "config" object."""
    if not isinstance(config, dict):
        raise ConvertError("%s: expected a JSON object" % source)
    archs = config.get("architectures")
    if isinstance(archs, list) and archs:
        name = archs[0]
        if name not in SUPPORTED_ARCHITECTURES:
            raise ConvertError("%s: unsupported architecture '%s'; supported: %s"
                               % (source, name, SUPPORTED_LIST))
        arch = SUPPORTED_ARCHITECTURES[name]
    else:
        if not _present(config, "model_type"):
            raise ConvertError("%s: neither 'architectures' nor 'model_type' is set; supported: %s"
                               % (source, SUPPORTED_LIST))
        name = config["model_type"]
        if name not in SUPPORTED_ARCHITECTURES.values():
            raise ConvertError("%s: unsupported model_type '%s'; supported: %s"
                               % (source, name, SUPPORTED_LIST))
        arch = name

    if _present(config, "hidden_act") and config["hidden_act"] != "silu":
        raise ConvertError('%s: hidden_act %s is not supported (only "silu")'
                           % (source, json.dumps(config["hidden_act"])))

    c = {"arch": arch}
    c["vocab_size"] = _get_positive(config, "vocab_size", source)
    c["hidden_size"] = _get_positive(config, "hidden_size", source)
    c["intermediate_size"] = _get_positive(config, "intermediate_size", source)
    c["n_layers"] = _get_positive(config, "num_hidden_layers", source)
    c["n_heads"] = _get_positive(config, "num_attention_heads", source)
    c["n_kv_heads"] = (_get_positive(config, "num_key_value_heads", source)
                       if _present(config, "num_key_value_heads") else c["n_heads"])
    if _present(config, "head_dim"):
        c["head_dim"] = _get_positive(config, "head_dim", source)
    else:
        if c["hidden_size"] % c["n_heads"]:
            raise ConvertError("%s: head_dim is absent and num_attention_heads=%d does not divide "
                               "hidden_size=%d" % (source, c["n_heads"], c["hidden_size"]))
        c["head_dim"] = c["hidden_size"] // c["n_heads"]
    if c["n_heads"] % c["n_kv_heads"]:
        raise ConvertError("%s: num_key_value_heads=%d does not divide num_attention_heads=%d"
                           % (source, c["n_kv_heads"], c["n_heads"]))
    c["max_position_embeddings"] = _get_positive(config, "max_position_embeddings", source)
    theta = 10000.0
    if _present(config, "rope_theta"):
        theta = _get_number(config, "rope_theta", source)
    elif _present(config, "rope_parameters") and _present(config["rope_parameters"], "rope_theta"):
        theta = _get_number(config["rope_parameters"], "rope_theta", source + " rope_parameters")
    c["rope_theta"] = theta
    c["rms_norm_eps"] = (_get_number(config, "rms_norm_eps", source)
                         if _present(config, "rms_norm_eps") else 1e-5)
    tie = config.get("tie_word_embeddings", False)
    if not isinstance(tie, bool):
        raise ConvertError("%s: key 'tie_word_embeddings' must be true or false, found %s"
                           % (source, json.dumps(tie)))
    c["tie_word_embeddings"] = tie
    c["qk_norm"] = arch in ("qwen3", "qwen3_moe")
    # Biases as transformers builds the layers: Qwen2 always has q/k/v biases; Llama and Qwen3
    # follow attention_bias (q/k/v/o) and Llama mlp_bias (gate/up/down); Mistral and Phi3 none.
    attention_bias = arch in ("llama", "qwen3", "qwen3_moe") and config.get("attention_bias") is True
    c["qkv_bias"] = arch == "qwen2" or attention_bias
    c["o_bias"] = attention_bias
    c["mlp_bias"] = arch == "llama" and config.get("mlp_bias") is True
    c["sliding_window"] = 0
    if arch in ("mistral", "phi3", "mixtral") and _present(config, "sliding_window"):
        c["sliding_window"] = _get_positive(config, "sliding_window", source)
    if arch in ("qwen3", "qwen2", "qwen3_moe") and config.get("use_sliding_window") is True:
        raise ConvertError("%s: use_sliding_window=true is not supported for %s "
                           "(sliding-window layers are not implemented)" % (source, arch))
    if _present(config, "partial_rotary_factor") and \
            _get_number(config, "partial_rotary_factor", source) != 1.0:
        raise ConvertError("%s: partial_rotary_factor %s is not supported (RoPE over the whole "
                           "head only)" % (source, json.dumps(config["partial_rotary_factor"])))
    c["rope_scaling"] = parse_rope(config, c["max_position_embeddings"], c["head_dim"], source)
    gen = generation_config if isinstance(generation_config, dict) else {}
    bos = -1
    if _is_int(config.get("bos_token_id")):
        bos = config["bos_token_id"]
    elif _is_int(gen.get("bos_token_id")):
        bos = gen["bos_token_id"]
    c["bos_token_id"] = bos
    eos = []
    _add_token_ids(config, "eos_token_id", source, eos)
    _add_token_ids(gen, "eos_token_id", "generation_config.json", eos)
    c["eos_token_ids"] = eos
    if arch in MOE_ARCHS:
        parse_moe(config, source, c)
    return c


def parse_moe(config, source, c):
    """The mixture-of-experts keys (twin of parse_moe in src/model/model_config.cpp)."""
    if c["arch"] == "mixtral":
        c["n_experts"] = (_get_positive(config, "num_local_experts", source)
                          if _present(config, "num_local_experts") else 8)
        c["n_experts_per_tok"] = (_get_positive(config, "num_experts_per_tok", source)
                                  if _present(config, "num_experts_per_tok") else 2)
        c["moe_intermediate_size"] = c["intermediate_size"]
        c["norm_topk_prob"] = True
        c["decoder_sparse_step"] = 1
        c["mlp_only_layers"] = []
    else:
        # Hub configs say num_experts; transformers 5 saves it as num_local_experts.
        c["n_experts"] = _get_positive(config, "num_experts" if _present(config, "num_experts")
                                       else "num_local_experts", source)
        c["n_experts_per_tok"] = _get_positive(config, "num_experts_per_tok", source)
        c["moe_intermediate_size"] = _get_positive(config, "moe_intermediate_size", source)
        c["norm_topk_prob"] = (_get_bool(config, "norm_topk_prob", source)
                               if _present(config, "norm_topk_prob") else False)
        c["decoder_sparse_step"] = (_get_positive(config, "decoder_sparse_step", source)
                                    if _present(config, "decoder_sparse_step") else 1)
        layers = config.get("mlp_only_layers") or []
        if not isinstance(layers, list) or not all(_is_int(e) for e in layers):
            raise ConvertError("%s: key 'mlp_only_layers' must be a list of layer indices, found %s"
                               % (source, json.dumps(config.get("mlp_only_layers"))))
        c["mlp_only_layers"] = list(layers)
    if c["n_experts_per_tok"] > c["n_experts"]:
        raise ConvertError("%s: num_experts_per_tok=%d exceeds the %d experts"
                           % (source, c["n_experts_per_tok"], c["n_experts"]))


def is_moe_layer(c, layer):
    """Twin of ModelConfig::is_moe_layer."""
    if c.get("n_experts", 0) <= 0 or layer in c["mlp_only_layers"]:
        return False
    return (layer + 1) % c["decoder_sparse_step"] == 0


def valid_tp_sizes(c, max_tp=64):
    return [tp for tp in range(1, max_tp + 1)
            if c["n_heads"] % tp == 0 and c["n_kv_heads"] % tp == 0
            and c["intermediate_size"] % tp == 0
            and (c.get("n_experts", 0) == 0 or c["moe_intermediate_size"] % tp == 0)]


def check_tp(c, tp):
    if tp < 1:
        raise ConvertError("tp must be >= 1, got %d" % tp)
    valid = ", ".join(str(t) for t in valid_tp_sizes(c))
    for key, value in (("num_attention_heads", c["n_heads"]),
                       ("num_key_value_heads", c["n_kv_heads"]),
                       ("intermediate_size", c["intermediate_size"])):
        if value % tp:
            raise ConvertError("tp=%d does not divide %s=%d; valid tp: %s" % (tp, key, value, valid))
    if c.get("n_experts", 0) > 0 and c["moe_intermediate_size"] % tp:
        raise ConvertError("tp=%d does not divide the experts' width moe_intermediate_size=%d; "
                           "valid tp: %s" % (tp, c["moe_intermediate_size"], valid))
