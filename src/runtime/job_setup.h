// The set-up every mode of the job shares, in two phases so the engine can be sized for the
// work: open_model() reads the model description (and, on tp leaders, the tokenizer), then
// start_engine() picks the backend, plans memory, builds the communicator, allocates and loads.
// Every step ends in agreement across ranks, so a failure anywhere is an error everywhere.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "comm/communicator.h"
#include "comm/pipe.h"
#include "comm/world.h"
#include "config/run_config.h"
#include "io/model_dir.h"
#include "model/model_config.h"
#include "model/transformer.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/memory_plan.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

struct ModelHandle {
  ModelConfig config;
  std::unique_ptr<ModelDir> dir;         // null with dummy weights
  std::unique_ptr<Tokenizer> tokenizer;  // tp leaders only
  ShardDims dims;
  std::vector<int32_t> stop_ids;    // EOS ids of the configs and tokenizer, and BOS
  DType weight_dtype = DType::f32;  // the shards' (float) dtype, or the dummy weights'
  // int8 models: the scales' group (0 per channel, 32), and weight_dtype is the float tensors'
  // dtype; -1 for float models.
  int int8_group = -1;
  // Ids [0, sample_vocab) can be sampled: the tokenizer's size when the model's vocabulary is
  // padded past it (Qwen3: 151669 tokens, vocab_size 151936), else vocab_size. Leaders only.
  int sample_vocab = 0;
};

struct EngineHandle {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<PipeLink> pipe;  // pp > 1: the link to the neighbouring stages
  std::unique_ptr<Engine> engine;
  MemoryPlan plan;
  BackendKind backend_kind = BackendKind::cpu;
  CommKind comm_kind = CommKind::null;
  double load_ms = 0.0;
};

// Calls world.set_layout(cfg.tp, cfg.pp) first.
ModelHandle open_model(World& world, const RunConfig& cfg);
EngineHandle start_engine(World& world, const RunConfig& cfg, const ModelHandle& model,
                          const EngineShape& shape);

// The engine's shape for the work, in one place for every front end: max_seq is the config's
// or, when 0, the longest request (max_needed tokens, rounded up to 16) or, for requests not
// known in advance (max_needed <= 0: a server), the model's positions up to 4096; n_slots is
// batch_size, but no more than a replica can fill (max_requests over dp replicas; <= 0 =
// unbounded); a forward takes up to 512 tokens (a prefill chunk).
EngineShape size_engine(const RunConfig& cfg, const ModelConfig& model, int max_needed,
                        int64_t max_requests, int dp);

// How many ids a sampler may pick: min(vocab_size, tokenizer size). Throws naming both sizes when
// the tokenizer has more ids than the model's vocabulary (the model has no logits for them).
int sampleable_vocab(const ModelConfig& config, const Tokenizer& tokenizer);

// Tokenizes a prompt (or a chat) as the job does; leaders only. tools_json: the chat's tools
// (an OpenAI `tools` array as JSON text, "" = none), passed to the chat template.
std::vector<int32_t> tokenize_prompt(const Tokenizer& tok, const std::string& prompt, bool chat,
                                     const std::vector<ChatMessage>& messages,
                                     const std::string& system, bool enable_thinking,
                                     const std::string& tools_json = "");

// Per-rank memory as JSON objects gathered on world rank 0 (empty elsewhere).
std::vector<std::string> gather_memory_report(World& world, const EngineHandle& e);

double percentile(std::vector<double> v, double p);

// The part of a metrics file every mode shares: layout, backend, model.
nlohmann::json describe_run(World& world, const RunConfig& cfg, const EngineHandle& e);
// Writes a metrics JSON file; throws naming the path when it cannot.
void write_metrics_json(const std::string& path, const nlohmann::json& metrics);

}  // namespace tpinfer
