// StreamDecoder: incremental detokenisation with a small window of recent ids.
//
// ids_ holds the window: an "anchor" token whose text was already returned, then the ids since.
// emitted_bytes_ counts the bytes of the window's raw decode already returned. Each push decodes
// only the window, returns the bytes past emitted_bytes_ up to the last complete character, and,
// when nothing is pending, restarts the window at the new token. The anchor gives the next token
// its context, so decoder rules that look at the start of the text (SentencePiece's Strip of one
// leading space, Metaspace's first token) only ever change the anchor's own, already returned
// text. Byte-fallback tokens are held until their group ends, because tokenizers' ByteFallback
// decides valid-UTF-8-or-U+FFFD for the whole group at once.
#include <algorithm>

#include "core/error.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer {

namespace {

// Start of the trailing run of at most max_count `content` characters in s[0, end).
size_t strip_holdback(const std::string& s, size_t end, const std::string& content,
                      size_t max_count) {
  size_t count = 0;
  while (count < max_count && end >= content.size() && !content.empty() &&
         s.compare(end - content.size(), content.size(), content) == 0) {
    end -= content.size();
    ++count;
  }
  return end;
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special)
    : tok_(tok), skip_special_(skip_special) {}

void StreamDecoder::reset() {
  ids_.clear();
  emitted_bytes_ = 0;
}

std::string StreamDecoder::push(int32_t id) {
  const auto* hf = dynamic_cast<const tok::HfTokenizer*>(&tok_);
  if (hf == nullptr) {
    // Another Tokenizer implementation: re-decode everything, hold back a trailing U+FFFD.
    ids_.push_back(id);
    const std::string text = tok_.decode(ids_, skip_special_);
    size_t cut = text.size();
    while (cut >= 3 && text.compare(cut - 3, 3, "\xEF\xBF\xBD") == 0) cut -= 3;
    if (cut <= emitted_bytes_) return {};
    std::string out = text.substr(emitted_bytes_, cut - emitted_bytes_);
    emitted_bytes_ = cut;
    return out;
  }
  hf->token_text(id);  // throws for an id out of range, before any state changes
  if (hf->skipped(id, skip_special_)) return {};
  ids_.push_back(id);
  if (hf->is_byte_fallback_token(id)) return {};  // wait for the end of the byte group

  const tok::DecoderTraits& traits = hf->decoder_traits();
  // keep_trailing: what a Strip of the text's end would remove is held back here instead.
  const std::string raw = hf->decode_raw(ids_.data(), ids_.size(), skip_special_, true);
  size_t cut = raw.size() - tok::incomplete_utf8_tail(raw);
  if (traits.strip_stop > 0) {
    cut = strip_holdback(raw, cut, traits.strip_content, traits.strip_stop);
  }
  std::string out;
  if (cut > emitted_bytes_) {
    out = tok::utf8_lossy(std::string_view(raw).substr(emitted_bytes_, cut - emitted_bytes_));
    emitted_bytes_ = cut;
  }
  // Restart the window at this token when everything before it is final and the token can
  // serve as an anchor (its own text absorbs a Strip of leading characters).
  if (cut == raw.size() && ids_.size() > 1) {
    const std::string& text = hf->token_text(id);
    size_t chars = 0;
    for (size_t i = 0; i < text.size() && chars <= traits.strip_start; ++chars)
      tok::next_cp(text, i);
    if (!text.empty() && chars >= std::max<size_t>(traits.strip_start, 1)) {
      ids_.assign(1, id);
      emitted_bytes_ = hf->decode_raw(ids_.data(), 1, skip_special_, true).size();
    }
  }
  return out;
}

std::string StreamDecoder::flush() {
  const auto* hf = dynamic_cast<const tok::HfTokenizer*>(&tok_);
  std::string out;
  if (hf == nullptr) {
    const std::string text = tok_.decode(ids_, skip_special_);
    if (text.size() > emitted_bytes_) out = text.substr(emitted_bytes_);
  } else if (!ids_.empty()) {
    const tok::DecoderTraits& traits = hf->decoder_traits();
    const std::string raw = hf->decode_raw(ids_.data(), ids_.size(), skip_special_, true);
    // The end of the text is final now: drop what the Strip removes from it.
    const size_t end = traits.strip_stop > 0 ? strip_holdback(raw, raw.size(), traits.strip_content,
                                                              traits.strip_stop)
                                             : raw.size();
    if (end > emitted_bytes_) {
      out = tok::utf8_lossy(std::string_view(raw).substr(emitted_bytes_, end - emitted_bytes_));
    }
  }
  reset();
  return out;
}

}  // namespace tpinfer
