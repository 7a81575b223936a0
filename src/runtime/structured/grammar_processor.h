// Structured output as a LogitProcessor: the JSON automaton's state for one request, and the
// token mask it allows at each step. The mask is computed from the vocabulary trie
// (token_vocab.h): each stack of the state walks the trie depth first, stepping the automaton
// one byte per edge and pruning a subtree at its first dead byte; inside a string the tokens
// that stay in it come from a precomputed bit set and only the tokens that can leave it are
// walked. End-of-sequence ids are allowed exactly when the value is complete; once nothing else
// can follow, finished() ends the request ("stop").
#pragma once

#include <memory>
#include <vector>

#include "runtime/engine/logit_processor.h"
#include "runtime/structured/json_grammar.h"
#include "runtime/structured/token_vocab.h"

namespace tpinfer::structured {

class GrammarProcessor : public LogitProcessor {
 public:
  GrammarProcessor(std::shared_ptr<const Grammar> grammar,
                   std::shared_ptr<const TokenVocabulary> vocab, std::vector<int32_t> eos_ids);

  void apply(float* logits, int vocab) override;
  void accept(int32_t token) override;
  bool finished() const override;
  std::unique_ptr<LogitProcessor> clone() const override;

  // The allowed ids as a bit set (vocab->words() words), end-of-sequence ids included when the
  // value is complete. For tests and the benchmark; apply() uses it.
  const std::vector<uint64_t>& allowed();
  bool rejected() const { return rejected_; }  // a token the mask did not allow was accepted
  const MatchState& state() const { return state_; }

 private:
  void walk(const VocabTrie& trie, uint32_t node, int depth, const MatchState& s);

  std::shared_ptr<const TokenVocabulary> vocab_;
  JsonAutomaton automaton_;
  std::vector<int32_t> eos_;
  MatchState state_;
  bool ended_ = false;  // an end-of-sequence id was accepted
  bool rejected_ = false;
  // Scratch of the mask (reused every step): the allowed bits, one state per trie depth.
  std::vector<uint64_t> bits_;
  std::vector<MatchState> levels_;
  MatchState one_, rest_;
};

}  // namespace tpinfer::structured
