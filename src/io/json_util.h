// io/json_util.h: small helpers around nlohmann::json for the io layer.
//
// Why: every JSON file longquant reads (safetensors headers, config.json,
// generation_config.json, *.index.json) must fail with an lq::Error that names
// the file, the byte position of a syntax error, and the field that is wrong.
// These helpers centralise that so that the messages look the same everywhere.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace lq {

// Parses `text` as JSON. On a syntax error throws lq::Error
// "<source>: invalid JSON at byte offset N: <parser message>"
// (N counted from 0 at the start of `text`).
// If `duplicate_top_level_key` is non-null, it receives the first key that
// occurs twice in the top-level object ("" if none); nlohmann itself would
// silently keep the last value, which hides corrupt files.
nlohmann::json parse_json(std::string_view text, const std::string& source,
                          std::string* duplicate_top_level_key = nullptr);

// Type name of a JSON value for error messages ("string", "number", "null", ...).
std::string json_type_name(const nlohmann::json& j);

// True if j is an integer (or a float with an integral value that fits int64).
bool json_get_int(const nlohmann::json& j, int64_t* out);

}  // namespace lq
