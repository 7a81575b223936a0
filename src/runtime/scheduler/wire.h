// Requests, deltas and outcomes as they travel between world rank 0 and the replica leaders
// (JSON text in Mailbox messages: token ids, never prompt text). Text is sent as valid UTF-8
// (a byte that is not is replaced), so a message always parses.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "runtime/scheduler/request.h"

namespace tpinfer {

// Requests travel in batches inside one work message: JSON values, not text.
nlohmann::json request_to_wire(const ScheduledRequest& r);
ScheduledRequest request_from_wire(const nlohmann::json& j);

std::string delta_to_wire(uint64_t seq, const GenerationDelta& d);
GenerationDelta delta_from_wire(const std::string& text, uint64_t& seq);

// An outcome may carry its replica's KV cache counters (kv: null = none), so rank 0 sees them
// without a message of their own; outcome_from_wire fills *kv when the message has them.
std::string outcome_to_wire(uint64_t seq, const GenerationOutcome& o,
                            const KvCacheStats* kv = nullptr);
GenerationOutcome outcome_from_wire(const std::string& text, uint64_t& seq,
                                    std::optional<KvCacheStats>* kv = nullptr);

nlohmann::json kv_stats_to_wire(const KvCacheStats& s);
KvCacheStats kv_stats_from_wire(const nlohmann::json& j);

}  // namespace tpinfer
