// The cost of the structured-output mask: `tpinfer-bench-grammar TOKENIZER_DIR [SCHEMA DOC]`
// builds the vocabulary index of the tokenizer (timed once), then replays a document that
// validates against the schema token by token (the tokenizer's own ids for it) through a
// GrammarProcessor: each step computes the mask and applies it to a logits row of the whole
// vocabulary, as the scheduler does before sampling. Prints the time per token (mean, p50, p90,
// max) over several passes. Without SCHEMA and DOC: a representative schema (nested objects, an
// array of objects, strings, an enum, numbers, booleans, a nullable field) and a document of it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "runtime/structured/grammar_processor.h"
#include "tokenizer/tokenizer.h"

using namespace tpinfer;
using Clock = std::chrono::steady_clock;

namespace {

const char* const kSchema = R"({
  "type": "object",
  "properties": {
    "order_id": {"type": "string", "maxLength": 32},
    "customer": {"type": "object", "properties": {
        "name": {"type": "string"}, "email": {"type": "string"},
        "vip": {"type": "boolean"}}, "required": ["name", "email"],
        "additionalProperties": false},
    "items": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
        "sku": {"type": "string"}, "quantity": {"type": "integer"},
        "price": {"type": "number"}}, "required": ["sku", "quantity", "price"],
        "additionalProperties": false}},
    "status": {"enum": ["pending", "shipped", "delivered", "cancelled"]},
    "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}
  },
  "required": ["order_id", "customer", "items", "status"],
  "additionalProperties": false
})";

const char* const kDoc =
    R"({"order_id": "A-2024-00917", "customer": {"name": "Ada Lovelace", )"
    R"("email": "ada@example.org", "vip": true}, "items": [{"sku": "KB-101", "quantity": 2, )"
    R"("price": 49.95}, {"sku": "MS-7", "quantity": 1, "price": 19.5}], "status": "shipped", )"
    R"("note": "Leave the parcel at the front desk, please; the recipient works late on )"
    R"(Tuesdays and Thursdays."})";

std::string read_file(const char* path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error(std::string("cannot read ") + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

double ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 4) {
    std::cerr << "usage: tpinfer-bench-grammar TOKENIZER_DIR [SCHEMA.json DOC.json]\n";
    return 2;
  }
  try {
    const auto tok = Tokenizer::from_dir(argv[1]);
    const std::string schema_text = argc == 4 ? read_file(argv[2]) : kSchema;
    std::string doc = argc == 4 ? read_file(argv[3]) : kDoc;
    while (!doc.empty() && (doc.back() == '\n' || doc.back() == ' ')) doc.pop_back();

    const Clock::time_point t0 = Clock::now();
    const auto vocab = structured::TokenVocabulary::of(*tok);
    const Clock::time_point t1 = Clock::now();
    std::printf("vocabulary: %d ids, trie %zu nodes (exits: %zu), index built in %.0f ms\n",
                vocab->size(), vocab->all().nodes.size(), vocab->exits().nodes.size(), ms(t0, t1));

    const auto grammar = structured::compile_json_schema(nlohmann::json::parse(schema_text));
    const std::vector<int32_t> ids = tok->encode(doc, false);
    const std::vector<int32_t> eos = tok->eos_ids();
    std::vector<float> logits(static_cast<size_t>(vocab->size()));
    std::vector<double> per_token;
    const int passes = 5;
    for (int pass = 0; pass < passes; ++pass) {
      structured::GrammarProcessor proc(grammar, vocab, eos);
      for (size_t i = 0; i <= ids.size(); ++i) {
        std::fill(logits.begin(), logits.end(), 0.0f);
        const Clock::time_point a = Clock::now();
        proc.apply(logits.data(), static_cast<int>(logits.size()));
        const Clock::time_point b = Clock::now();
        per_token.push_back(ms(a, b));

        if (i == ids.size()) {  // the end: an end-of-sequence id must be allowed
          const bool eos_ok = std::any_of(eos.begin(), eos.end(), [&](int32_t e) {
            return logits[static_cast<size_t>(e)] == 0.0f;
          });
          if (!eos.empty() && !eos_ok) throw std::runtime_error("EOS refused at the end");
          break;
        }
        if (logits[static_cast<size_t>(ids[i])] != 0.0f) {
          throw std::runtime_error("token " + std::to_string(i) + " (id " + std::to_string(ids[i]) +
                                   ") of the document was masked: the "
                                   "document does not validate, or the mask is wrong");
        }
        proc.accept(ids[i]);
      }
    }
    std::vector<double> sorted = per_token;
    std::sort(sorted.begin(), sorted.end());
    double sum = 0.0;
    for (double x : per_token) sum += x;
    const auto q = [&](double p) {
      return sorted[static_cast<size_t>(p * static_cast<double>(sorted.size() - 1))];
    };
    // Each token's fastest pass: what the mask costs without the preemptions of a loaded machine.
    const size_t n = ids.size() + 1;
    double best_sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
      double best = per_token[i];
      for (int pass = 1; pass < passes; ++pass) best = std::min(best, per_token[pass * n + i]);
      best_sum += best;
    }
    std::printf(
        "mask + apply per token over %zu tokens x %d passes: mean %.3f ms, p50 %.3f, p90 %.3f, "
        "max %.3f; mean of each token's fastest pass %.3f ms\n",
        n, passes, sum / static_cast<double>(per_token.size()), q(0.5), q(0.9), sorted.back(),
        best_sum / static_cast<double>(n));
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "tpinfer-bench-grammar: error: " << e.what() << "\n";
    return 1;
  }
}
