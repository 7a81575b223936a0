// "Did you mean" for mistyped keys and flags: the closest known name by edit distance.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tpinfer::config {

// Levenshtein distance (insertions, deletions, substitutions each cost 1).
size_t edit_distance(const std::string& a, const std::string& b);

// The candidate closest to `word`, if it is close enough to be a plausible typo: within about a
// third of the longer name's length, or one the word is a prefix of ("temp" -> "temperature",
// preferred over a typo). Compares case-insensitively with '-' and '_' treated alike, so
// `--max_new_tokens` finds `--max-new-tokens`. Ties go to the earlier candidate.
std::optional<std::string> closest_match(const std::string& word,
                                         const std::vector<std::string>& candidates);

}  // namespace tpinfer::config
