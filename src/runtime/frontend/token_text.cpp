#include "runtime/frontend/token_text.h"

#include <string>
#include <vector>

namespace tpinfer {

openai::TokenText token_text_of(const Tokenizer& tokenizer) {
  const std::vector<int32_t> a = tokenizer.encode("a", false);
  const int32_t anchor = a.size() == 1 ? a[0] : -1;
  return [&tokenizer, anchor](int32_t id) -> std::string {
    try {
      if (anchor >= 0) {
        const std::string alone = tokenizer.decode({anchor});
        const std::string both = tokenizer.decode({anchor, id});
        if (both.compare(0, alone.size(), alone) == 0) return both.substr(alone.size());
      }
      return tokenizer.decode({id});
    } catch (const std::exception&) {
      return std::string();
    }
  };
}

}  // namespace tpinfer
