#include "runtime/structured/grammar_processor.h"

#include <algorithm>
#include <limits>

namespace tpinfer::structured {

GrammarProcessor::GrammarProcessor(std::shared_ptr<const Grammar> grammar,
                                   std::shared_ptr<const TokenVocabulary> vocab,
                                   std::vector<int32_t> eos_ids)
    : vocab_(std::move(vocab)),
      automaton_(std::move(grammar)),
      eos_(std::move(eos_ids)),
      state_(automaton_.initial()) {}

void GrammarProcessor::walk(const VocabTrie& trie, uint32_t node, int depth, const MatchState& s) {
  const VocabTrie::Node& nd = trie.nodes[node];
  MatchState& next = levels_[static_cast<size_t>(depth) + 1];
  for (uint32_t c = nd.first_child; c < nd.first_child + nd.n_children; ++c) {
    const VocabTrie::Node& child = trie.nodes[c];
    if (!automaton_.step(s, child.byte, next)) continue;
    for (uint32_t t = child.tok_begin; t < child.tok_end; ++t) {
      const int32_t id = trie.tokens[t];
      bits_[static_cast<size_t>(id) / 64] |= uint64_t{1} << (id % 64);
    }
    if (child.n_children > 0) walk(trie, c, depth + 1, next);
  }
}

const std::vector<uint64_t>& GrammarProcessor::allowed() {
  bits_.assign(static_cast<size_t>(vocab_->words()), 0);
  if (levels_.empty()) {
    levels_.resize(static_cast<size_t>(std::max(vocab_->all().max_depth, 1)) + 2);
  }
  if (ended_ || state_.dead()) return bits_;
  rest_.frames.clear();
  rest_.ends.clear();
  for (size_t i = 0; i < state_.n_stacks(); ++i) {
    const Frame* body = automaton_.string_body(state_, i);
    if (!body) {  // walked with the other stacks below
      const size_t from = i == 0 ? 0 : state_.ends[i - 1];
      rest_.frames.insert(rest_.frames.end(),
                          state_.frames.begin() + static_cast<std::ptrdiff_t>(from),
                          state_.frames.begin() + static_cast<std::ptrdiff_t>(state_.ends[i]));
      rest_.ends.push_back(static_cast<uint32_t>(rest_.frames.size()));
      continue;
    }
    // Inside a string: the tokens that stay inside are a precomputed set (all of them, or those
    // short enough for maxLength); the tokens that may leave it are walked.
    const int pending = std::min<int>(body->m, 3);
    const uint32_t max_len = automaton_.grammar().nodes[body->node].max_length;
    if (max_len == UINT32_MAX) {
      const std::vector<uint64_t>& b = vocab_->body_bits(pending);
      for (size_t w = 0; w < bits_.size(); ++w) bits_[w] |= b[w];
    } else {
      const uint32_t room = max_len > body->n ? max_len - body->n : 0;
      const std::vector<int32_t>& ids = vocab_->body_ids(pending);
      const std::vector<uint32_t>& chars = vocab_->body_chars(pending);
      for (size_t k = 0; k < ids.size() && chars[k] <= room; ++k) {
        bits_[static_cast<size_t>(ids[k]) / 64] |= uint64_t{1} << (ids[k] % 64);
      }
    }
    one_.frames.clear();
    one_.ends.clear();
    const size_t from = i == 0 ? 0 : state_.ends[i - 1];
    one_.frames.assign(state_.frames.begin() + static_cast<std::ptrdiff_t>(from),
                       state_.frames.begin() + static_cast<std::ptrdiff_t>(state_.ends[i]));
    one_.ends.push_back(static_cast<uint32_t>(one_.frames.size()));
    walk(vocab_->exits(), 0, 0, one_);
  }
  if (!rest_.dead()) walk(vocab_->all(), 0, 0, rest_);
  if (automaton_.can_end(state_)) {
    for (int32_t id : eos_) {
      if (id >= 0 && id < vocab_->size())
        bits_[static_cast<size_t>(id) / 64] |= uint64_t{1} << (id % 64);
    }
  }
  return bits_;
}

void GrammarProcessor::apply(float* logits, int vocab) {
  const std::vector<uint64_t>& bits = allowed();
  const bool any = std::any_of(bits.begin(), bits.end(), [](uint64_t w) { return w != 0; });
  const float minus_inf = -std::numeric_limits<float>::infinity();
  if (!any) {  // nothing can continue (never for a well-formed state): only the end
    for (int i = 0; i < vocab; ++i) {
      if (std::find(eos_.begin(), eos_.end(), i) == eos_.end()) logits[i] = minus_inf;
    }
    return;
  }
  const int n = std::min(vocab, vocab_->size());
  for (int w = 0; w * 64 < n; ++w) {
    const uint64_t word = bits[static_cast<size_t>(w)];
    if (word == ~uint64_t{0}) continue;
    const int end = std::min(n, (w + 1) * 64);
    for (int i = w * 64; i < end; ++i) {
      if (!((word >> (i - w * 64)) & 1)) logits[i] = minus_inf;
    }
  }
  for (int i = n; i < vocab; ++i) logits[i] = minus_inf;  // padding past the tokenizer
}

void GrammarProcessor::accept(int32_t token) {
  if (std::find(eos_.begin(), eos_.end(), token) != eos_.end()) {
    ended_ = true;
    return;
  }
  if (token < 0 || token >= vocab_->size() || vocab_->bytes(token).empty() ||
      !advance(automaton_, state_, vocab_->bytes(token))) {
    rejected_ = true;
    ended_ = true;
  }
}

bool GrammarProcessor::finished() const {
  return ended_ || automaton_.must_end(state_);
}

std::unique_ptr<LogitProcessor> GrammarProcessor::clone() const {
  auto p = std::make_unique<GrammarProcessor>(*this);
  return p;
}

}  // namespace tpinfer::structured
