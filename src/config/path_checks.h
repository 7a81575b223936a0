// The file arguments of a run, checked before any work: each message names the key, the path,
// what was expected and what was found ("key 'output': 'runs/' is a directory; expected a JSON
// Lines file to append results to"), instead of a stream error from deep inside a reader.
// Run on the rank that uses the files (rank 0); the job agrees on the outcome.
#pragma once

#include <string>

#include "config/run_config.h"

namespace tpinfer {

// prompt_file and input: an existing, readable regular file. output and metrics_json: a regular
// file that is writable, or a new file in an existing, writable directory; output must not be
// the input (also through symlinks or another spelling of the path). tokenizer: a directory.
// Throws tpinfer::Error on the first problem.
void check_file_keys(const RunConfig& cfg);

// Each check alone; `key` names the config key in the message.
void check_readable_file(const std::string& key, const std::string& path,
                         const std::string& expected);
void check_writable_file(const std::string& key, const std::string& path,
                         const std::string& expected);

}  // namespace tpinfer
