// The engine tests' tiny random Llama shape: 2 layers, hidden 32, 4 heads over 2 KV heads of 8,
// vocab 64 (tp 1 and 2 divide every dimension).
#pragma once

#include "model/model_config.h"

inline tpinfer::ModelConfig tiny_model_config(int max_position, int sliding_window = 0) {
  tpinfer::ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = max_position;
  c.sliding_window = sliding_window;
  return c;
}
