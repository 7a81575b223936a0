#include "runtime/scheduler/grammar_constraint.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "runtime/structured/grammar_processor.h"

namespace tpinfer {

std::unique_ptr<LogitProcessor> make_grammar_constraint(const GenerationRequest& request,
                                                        const Tokenizer* tokenizer,
                                                        const std::vector<int32_t>& stop_ids) {
  if (request.response_schema.empty()) return nullptr;
  if (!tokenizer) throw std::runtime_error("structured output needs the model's tokenizer");
  auto grammar = structured::compile_json_schema(nlohmann::json::parse(request.response_schema));
  return std::make_unique<structured::GrammarProcessor>(
      std::move(grammar), structured::TokenVocabulary::of(*tokenizer), stop_ids);
}

}  // namespace tpinfer
