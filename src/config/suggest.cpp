// Edit-distance suggestions for unknown keys and flags.
#include "config/suggest.h"

#include <algorithm>
#include <cctype>

namespace tpinfer::config {

namespace {
std::string normalise(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    out += c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}
}  // namespace

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::optional<std::string> closest_match(const std::string& word,
                                         const std::vector<std::string>& candidates) {
  const std::string w = normalise(word);
  if (w.empty()) return std::nullopt;
  std::optional<std::string> best;
  size_t best_score = 0;
  for (const auto& cand : candidates) {
    const std::string c = normalise(cand);
    const size_t d = edit_distance(w, c);
    const size_t limit = std::max<size_t>(2, (std::max(w.size(), c.size()) + 1) / 3);
    const bool prefix = w.size() >= 3 && c.compare(0, w.size(), w) == 0;
    if (d > limit && !prefix) continue;
    // Scores in half steps: exact 0, a prefix 1 (the word was cut short: "temp"), a typo 2*d.
    const size_t score = d == 0 ? 0 : prefix ? 1 : 2 * d;
    if (!best || score < best_score) {
      best = cand;
      best_score = score;
    }
  }
  return best;
}

}  // namespace tpinfer::config
