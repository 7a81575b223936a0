// The one place where a request's LogitProcessors are built, on the replica leader when the
// request takes a slot: today the structured-output grammar (response_format, constrained tool
// calls); penalties and logit_bias plug in here too.
#pragma once

#include <memory>
#include <vector>

#include "runtime/engine/logit_processor.h"
#include "runtime/scheduler/request.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

// tokenizer: the replica's (null: requests of ids alone, which cannot be constrained);
// stop_ids: the ids that end a sequence (allowed once a grammar is complete). Throws
// std::runtime_error when the request cannot be constrained (the front end checked it already,
// so this is a request failing alone, never the job).
std::vector<std::unique_ptr<LogitProcessor>> make_logit_processors(
    const GenerationRequest& request, const Tokenizer* tokenizer,
    const std::vector<int32_t>& stop_ids);

}  // namespace tpinfer
