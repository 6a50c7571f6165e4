// io/json_util.cc: see json_util.h.
#include "io/json_util.h"

#include <cmath>
#include <unordered_set>

#include "core/error.h"

namespace lq {

nlohmann::json parse_json(std::string_view text, const std::string& source,
                          std::string* duplicate_top_level_key) {
  using json = nlohmann::json;
  try {
    if (!duplicate_top_level_key) return json::parse(text.begin(), text.end());
    duplicate_top_level_key->clear();
    std::unordered_set<std::string> seen;
    // The parser callback sees every object key; depth 1 is the top-level object.
    json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
      if (ev == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
        const auto& k = parsed.get_ref<const std::string&>();
        if (!seen.insert(k).second && duplicate_top_level_key->empty()) *duplicate_top_level_key = k;
      }
      return true;
    };
    return json::parse(text.begin(), text.end(), cb);
  } catch (const json::parse_error& e) {
    // nlohmann counts bytes from 1; report the 0-based offset of the offending byte.
    fail("{}: invalid JSON at byte offset {}: {}", source, e.byte > 0 ? e.byte - 1 : 0, e.what());
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", source, e.what());
  }
}

std::string json_type_name(const nlohmann::json& j) { return j.type_name(); }

bool json_get_int(const nlohmann::json& j, int64_t* out) {
  if (j.is_number_unsigned()) {
    uint64_t u = j.get<uint64_t>();
    if (u > uint64_t(INT64_MAX)) return false;
    *out = int64_t(u);
    return true;
  }
  if (j.is_number_integer()) {
    *out = j.get<int64_t>();
    return true;
  }
  if (j.is_number_float()) {
    double d = j.get<double>();
    // 2^63 is exactly representable; anything >= it does not fit.
    if (!std::isfinite(d) || d != std::floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
      return false;
    *out = int64_t(d);
    return true;
  }
  return false;
}

}  // namespace lq
