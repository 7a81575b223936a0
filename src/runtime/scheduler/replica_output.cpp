// What a replica's sequences produce (ReplicaScheduler, see replica_seq.h): a sampled or drawn
// token taken on (stop ids, stop strings, a finished grammar, the length limit), its text streamed
// in deltas that never split a UTF-8 character or a possible stop string, prompt logprobs, and
// the outcome when it finishes.
#include <algorithm>

#include "runtime/engine/logprobs.h"
#include "runtime/scheduler/replica_seq.h"

namespace tpinfer {
namespace {

// Where `text` can be cut without splitting a UTF-8 character, at or before `at`.
size_t utf8_boundary(const std::string& text, size_t at) {
  while (at > 0 && at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) --at;
  return at;
}

}  // namespace

void ReplicaScheduler::send_delta(Seq& s, bool final) {
  if (!s.req.stream) return;
  size_t upto = s.text.size();
  if (!final && s.max_stop > 1) {  // a stop string may still start in the last max_stop-1 bytes
    upto = upto > s.max_stop - 1 ? utf8_boundary(s.text, upto - (s.max_stop - 1)) : 0;
    upto = std::max(upto, s.streamed);
  }
  if (upto == s.streamed && s.delta_from == s.generated.size()) return;
  GenerationDelta d;
  d.index = s.index;
  d.text = s.text.substr(s.streamed, upto - s.streamed);
  d.token_ids.assign(s.generated.begin() + static_cast<std::ptrdiff_t>(s.delta_from),
                     s.generated.end());
  if (s.req.logprobs >= 0) {
    d.logprobs.assign(s.logprobs.begin() + static_cast<std::ptrdiff_t>(s.delta_from),
                      s.logprobs.end());
  }
  s.streamed = upto;
  s.delta_from = s.generated.size();
  events_.on_delta(s.seq, std::move(d));
}

void ReplicaScheduler::finish(Seq& s, const char* reason, const std::string& error) {
  std::string finish_reason = reason;
  const bool ok = finish_reason == "stop" || finish_reason == "length";
  if (ok) {
    const std::string tail = s.decoder ? s.decoder->flush() : std::string();
    if (!tail.empty()) {
      const size_t from = s.text.size();
      s.text += tail;
      // The held-back bytes may complete a stop string.
      for (const std::string& stop : s.req.stop) {
        const size_t start = from >= stop.size() ? from - stop.size() + 1 : 0;
        const size_t at = s.text.find(stop, start);
        if (at != std::string::npos) {
          s.text.resize(at);
          finish_reason = "stop";
        }
      }
    }
    send_delta(s, true);
  }
  GenerationOutcome o;
  o.index = s.index;
  o.text = std::move(s.text);
  o.finish_reason = finish_reason;
  o.error = error;
  o.prompt_tokens = static_cast<int>(s.req.prompt_ids.size());
  o.token_ids = std::move(s.generated);
  o.logprobs = std::move(s.logprobs);
  if (s.req.prompt_logprobs >= 0) {
    o.prompt_ids = s.req.prompt_ids;
    o.prompt_logprobs = std::move(s.prompt_logprobs);
  }
  const Clock::time_point now = Clock::now();
  o.prefill_ms = ms_between(s.admitted, s.prefilled);
  o.ttft_ms = o.token_ids.empty() ? 0.0 : ms_between(s.admitted, s.first_token);
  o.total_ms = ms_between(s.admitted, now);
  o.decode_ms = std::move(s.decode_ms);
  o.replica = replica_;
  release_blocks(s);
  s.state = Seq::State::free;
  s.awaiting = false;
  ++s.epoch;
  s.recompute_pending = false;
  s.sampler.reset();
  s.processors.clear();
  s.decoder.reset();
  s.text.clear();
  s.generated.clear();
  s.logprobs.clear();
  s.prompt_logprobs.clear();
  s.req = GenerationRequest();
  events_.on_finish(s.seq, std::move(o));
}

void ReplicaScheduler::fail(Seq& s, const std::string& error) {
  finish(s, "error", "token " + std::to_string(s.generated.size() + 1) + ": " + error);
}

void ReplicaScheduler::accept_token(Seq& s, const float* logits, int32_t drawn) {
  // A failure here belongs to this request alone (non-finite logits, an id the tokenizer cannot
  // decode): it ends with an error and the other sequences go on. The followers need not know: the
  // sequence simply takes no more tokens, as after a stop.
  int32_t tok = -1;
  std::string piece;
  const Clock::time_point now = Clock::now();
  try {
    // Processors change a copy: logprobs below report the model's own distribution.
    if (drawn >= 0) {
      tok = drawn;
    } else {
      const float* row = logits;
      if (!s.processors.empty()) {
        std::copy(logits, logits + sample_vocab_, processed_.begin());
        for (const std::unique_ptr<LogitProcessor>& p : s.processors) {
          p->apply(processed_.data(), sample_vocab_);
        }
        row = processed_.data();
      }
      tok = s.sampler->sample(row);
    }
    for (const std::unique_ptr<LogitProcessor>& p : s.processors) p->accept(tok);
    if (s.generated.empty()) {
      s.first_token = now;
    } else {
      s.decode_ms.push_back(ms_between(s.last_token, now));
    }
    s.last_token = now;
    if ((!s.req.ignore_eos &&
         std::find(stop_ids_.begin(), stop_ids_.end(), tok) != stop_ids_.end()) ||
        std::find(s.req.stop_token_ids.begin(), s.req.stop_token_ids.end(), tok) !=
            s.req.stop_token_ids.end()) {
      finish(s, "stop");
      return;
    }
    if (s.decoder) piece = s.decoder->push(tok);
    if (s.req.logprobs >= 0) {
      s.logprobs.push_back(token_logprobs(logits, sample_vocab_, tok, s.req.logprobs));
    }
  } catch (const std::exception& e) {
    fail(s, e.what());
    return;
  }
  s.generated.push_back(tok);
  if (!piece.empty()) {
    const size_t from = s.text.size();
    s.text += piece;
    // Only a match that ends in the new piece is new; look back by the stop's length.
    size_t cut = std::string::npos;
    for (const std::string& stop : s.req.stop) {
      const size_t start = from >= stop.size() ? from - stop.size() + 1 : 0;
      const size_t at = s.text.find(stop, start);
      if (at != std::string::npos) cut = std::min(cut, at);
    }
    if (cut != std::string::npos) {
      s.text.resize(cut);
      s.decoder->reset();  // what it still holds belongs after the stop (a piece: a decoder)
      finish(s, "stop");
      return;
    }
  }
  const bool constraint_done =
      std::any_of(s.processors.begin(), s.processors.end(),
                  [](const std::unique_ptr<LogitProcessor>& p) { return p->finished(); });
  if (constraint_done) {  // a complete grammar allows nothing but the end
    finish(s, "stop");
    return;
  }
  if (static_cast<int>(s.generated.size()) >= s.req.max_new_tokens) {
    finish(s, "length");
    return;
  }
  s.next_token = tok;
  send_delta(s, false);
}

void ReplicaScheduler::score_prompt_token(Seq& s, const float* logits, int position) {
  try {
    const int32_t next = s.req.prompt_ids[static_cast<size_t>(position) + 1];
    s.prompt_logprobs.push_back(token_logprobs(logits, sample_vocab_, next, s.req.prompt_logprobs));
  } catch (const std::exception& e) {
    finish(s, "error", "prompt token " + std::to_string(position + 1) + ": " + e.what());
  }
}

}  // namespace tpinfer
