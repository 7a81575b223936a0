// Private to src/tokenizer: the Jinja renderer's filters (x | name), tests (x is name) and the
// Python str / dict methods templates call (x.strip(), d.get(k)), with jinja2 3.1's and Python's
// semantics. Failures throw tpinfer::Error with a bare message; the evaluator adds the line.
#pragma once

#include <string>

#include "tokenizer/jinja_value.h"

namespace tpinfer::tok::jinja {

bool has_filter(const std::string& name);
bool has_test(const std::string& name);
Value apply_filter(const std::string& name, const Value& v, Args& args);
bool apply_test(const std::string& name, const Value& v, Args& args);
// obj.name(args) for a str / dict / list method; false when obj has no such method.
bool call_method(const Value& obj, const std::string& name, Args& args, Value& result);
// obj.name / obj[key] as jinja2's getattr / getitem: a missing key is Undefined.
Value get_attr(const Value& obj, const std::string& name);
Value get_item(const Value& obj, const Value& key);

// Python str helpers shared with the evaluator.
std::string py_strip(const std::string& s, const Value& chars, bool left, bool right);
size_t cp_count(const std::string& s);
bool value_in(const Value& needle, const Value& hay);  // Python `needle in hay`

}  // namespace tpinfer::tok::jinja
