// A token's text as a client reads it in logprobs: the bytes the token adds mid-text. A token
// decoded alone reads as the start of a text, where a SentencePiece decoder drops the leading
// space ("there" for "▁there"); decoded after a plain anchor token it reads as it does
// mid-sentence (" there"). Shared by the server and the OpenAI batch files.
#pragma once

#include "runtime/frontend/openai/protocol.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

// The function keeps a reference to the tokenizer; "" for an id without a token.
openai::TokenText token_text_of(const Tokenizer& tokenizer);

}  // namespace tpinfer
