// Requests, deltas and outcomes as they travel between world rank 0 and the replica leaders
// (JSON text in Mailbox messages: token ids, never prompt text). Text is sent as valid UTF-8
// (a byte that is not is replaced), so a message always parses.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/scheduler/request.h"

namespace tpinfer {

// Requests travel in batches inside one work message: JSON values, not text.
nlohmann::json request_to_wire(const ScheduledRequest& r);
ScheduledRequest request_from_wire(const nlohmann::json& j);

std::string delta_to_wire(uint64_t seq, const GenerationDelta& d);
GenerationDelta delta_from_wire(const std::string& text, uint64_t& seq);

std::string outcome_to_wire(uint64_t seq, const GenerationOutcome& o);
GenerationOutcome outcome_from_wire(const std::string& text, uint64_t& seq);

}  // namespace tpinfer
