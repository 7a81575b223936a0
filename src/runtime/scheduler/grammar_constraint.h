// The structured-output constraint of a request (response_format, constrained tool calls): its
// JSON schema compiled into a grammar processor over the replica's tokenizer. The request's
// processors are then built in one place, make_logit_processors
// (runtime/engine/logit_processors.h), which puts the constraint after the penalties and logit bias
// and before min_p.
#pragma once

#include <memory>
#include <vector>

#include "runtime/engine/logit_processor.h"
#include "runtime/scheduler/request.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

// Null when the request has no schema. tokenizer: the replica's (null: requests of ids alone,
// which cannot be constrained); stop_ids: the ids that end a sequence (allowed once the grammar
// is complete). Throws std::runtime_error when the request cannot be constrained (the front end
// checked it already, so this is a request failing alone, never the job).
std::unique_ptr<LogitProcessor> make_grammar_constraint(const GenerationRequest& request,
                                                        const Tokenizer* tokenizer,
                                                        const std::vector<int32_t>& stop_ids);

}  // namespace tpinfer
