// Private to src/tokenizer: the stages of a Hugging Face tokenizer.json pipeline, each built from
// its JSON object with the semantics of the `tokenizers` library.
//   normalizer -> pre-tokenizer -> model (bpe.h) -> post-processor;  decoder for ids -> text.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tpinfer::tok {

class Regex;

// Text split into pieces: spans of `buf`. Pre-tokenizers refine the spans, and those that change
// the text (Metaspace, ByteLevel's prefix space) rewrite buf.
struct Pieces {
  std::string buf;
  std::vector<std::pair<uint32_t, uint32_t>> spans;  // [begin, end) in buf, non-empty
  void reset(std::string_view text) {
    buf.assign(text.data(), text.size());
    spans.clear();
    if (!text.empty()) spans.emplace_back(0, static_cast<uint32_t>(text.size()));
  }
};

// ---- normalizers -------------------------------------------------------------------------------
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Normalises s in place.
  virtual void apply(std::string& s) const = 0;
};
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where);

// ---- pre-tokenizers ----------------------------------------------------------------------------
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // segment_at_start: the text of `p` begins at offset 0 of the user's input (Metaspace's
  // prepend_scheme "first" looks at that).
  virtual void apply(Pieces& p, bool segment_at_start) const = 0;
  // True for the ByteLevel pre-tokenizer (the model then works on bytes).
  virtual bool is_byte_level() const { return false; }
};
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where,
                                                 bool* byte_level);

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// Finds the pieces of one of the well-known GPT-2 / Llama-3 / Qwen2 split patterns with a
// hand-written scanner (the same splits as the regex, much faster). Returns nullptr for any other
// pattern.
class FastSplitter {
 public:
  virtual ~FastSplitter() = default;
  virtual void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const = 0;
};
std::unique_ptr<FastSplitter> make_fast_splitter(const std::string& pattern);

// ---- decoders ----------------------------------------------------------------------------------
class Decoder {
 public:
  virtual ~Decoder() = default;
  // decode_chain of `tokenizers`: tokens in, tokens out. Byte-level output is left as raw bytes
  // (possibly invalid UTF-8); the caller applies from_utf8_lossy to the joined result.
  // keep_trailing: a Strip of the whole (fused) text leaves its trailing characters (streaming
  // holds them back itself, since later tokens decide whether they are trailing).
  virtual void apply(std::vector<std::string>& tokens, bool keep_trailing) const = 0;
};
// The facts StreamDecoder needs about a decoder pipeline.
struct DecoderTraits {
  bool byte_fallback = false;  // ByteFallback groups <0xNN> tokens until a non-byte token
  size_t strip_start = 0;      // Strip removes up to this many leading chars of the text
  size_t strip_stop = 0;       // ... and this many trailing ones of the fused text (held back
                               // when streaming)
  std::string strip_content;
  bool fused = false;  // (while building) a Fuse or ByteLevel stage came before
};
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where,
                                      DecoderTraits& traits);

// ---- post-processors ---------------------------------------------------------------------------
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Adds the special tokens of a single sequence (called only when add_special is true).
  virtual void apply(std::vector<int32_t>& ids) const = 0;
};
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j,
                                                   const std::string& where);

// The byte of a byte-fallback token "<0xNN>", or -1.
int byte_fallback_value(const std::string& token);

// Applies a Split behaviour to (match begin, end) offsets in a text of length n, giving the
// pieces as offsets (see tokenizers' SplitDelimiterBehavior).
void split_by_matches(const std::vector<std::pair<size_t, size_t>>& matches, size_t n,
                      SplitBehavior behavior, bool invert,
                      std::vector<std::pair<size_t, size_t>>& pieces);

}  // namespace tpinfer::tok
