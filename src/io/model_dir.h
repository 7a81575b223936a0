// A converted model directory: manifest.json (written by scripts/convert_hf.py), one HDF5 shard
// per tp rank (rank{r}-of-{tp}.h5; with pipeline stages one per stage and tp rank,
// stage{s}-of-{pp}-rank{r}-of-{tp}.h5) and the tokenizer/config files copied beside them.
//
// manifest.json keys: format ("tpinfer-shards"), format_version (2: fused qkv_proj /
// gate_up_proj; 1 is refused with the command that converts the directory again), architecture
// (the HF class, e.g. "Qwen3ForCausalLM"), config (ModelConfig::to_manifest), dtype ("f32" |
// "f16" | "bf16" | "int8", then also int8: {group_size, float_dtype, scale_dtype}), tp, files
// ([{rank, path, bytes, sha256}], one per rank; with pp > 1 also "stage", one per stage and
// rank), pp and pp_layers (the layers of each stage; both absent = one stage, as before
// pipeline parallelism), tokenizer_files, n_tensors, source ({dir, weights, dtype}),
// converter ({script, created}).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/model_config.h"
#include "model/pipeline_stages.h"

namespace tpinfer {

constexpr int kShardFormatVersion = 2;

struct ShardFile {
  int rank = 0;
  int stage = 0;
  std::string name;    // "rank0-of-4.h5", relative to the model dir
  int64_t bytes = 0;   // the loader refuses a file of any other size (truncated, replaced)
  std::string sha256;  // lower-case hex; the loader refuses a file with another digest
};

struct ModelDir {
  std::string path;
  ModelConfig config;
  int tp = 1;
  DType dtype = DType::f32;
  // int8 models (dtype int8; manifest "int8": {"group_size", "float_dtype", "scale_dtype"}): the
  // dtype the float tensors (embedding, norms, biases) are stored in, and the scales' group along
  // the input dim: 32, or 0 for one scale per output row of each shard (per channel).
  DType float_dtype = DType::f32;
  int int8_group = -1;  // -1: not an int8 model
  int format_version = 0;
  std::string tokenizer_dir;     // == path (tokenizer files sit beside the shards)
  std::string architecture;      // HF class name, e.g. "LlamaForCausalLM"
  int pp = 1;                    // pipeline stages the shards were cut for
  StageSplit split;              // layers per stage (one stage: all of them)
  std::string source_dir;        // the Hugging Face directory it was converted from ("" unknown)
  std::vector<ShardFile> files;  // files[stage * tp + r] is (stage, tp rank r)'s shard
  std::string shard_path(int rank, int stage = 0) const;
  const ShardFile* shard_file(int rank, int stage) const;
  StageRange stage_range(int stage) const;
  // Reads and validates manifest.json; errors name the file and the key.
  static ModelDir open(const std::string& path);
};

// Throws "model converted for tp=4 but the job runs tp=2: re-run scripts/convert_hf.py --tp 2"
// when the job's tp differs from the manifest's.
void check_job_tp(const ModelDir& md, int job_tp);

// The same for pipeline stages: refuses a job whose pp differs from the manifest's, with the
// converter command that converts the source again for the job's tp and pp.
void check_job_pp(const ModelDir& md, int job_tp, int job_pp);

// The shard file name of (stage, tp rank): "rank{r}-of-{tp}.h5" with one stage, else
// "stage{s}-of-{pp}-rank{r}-of-{tp}.h5" (the converter's shard_name).
std::string shard_file_name(int rank, int tp, int stage, int pp);

}  // namespace tpinfer
