// core/error.h: the project's one exception type and checking macros.
//
// Every failure that a user can cause (bad file, bad flag, bad config) throws
// lq::Error with a message that names the file, tensor or field involved.
// Programming errors (broken invariants) use LQ_ASSERT, which also throws so
// that the CLI can print them instead of aborting.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace lq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace lq

// LQ_CHECK(cond, "format {}", args...): throw lq::Error with the message if cond is false.
#define LQ_CHECK(cond, ...)        \
  do {                             \
    if (!(cond)) ::lq::fail(__VA_ARGS__); \
  } while (0)

#define LQ_ASSERT(cond)                                                                 \
  do {                                                                                  \
    if (!(cond)) ::lq::fail("internal error: {} failed at {}:{}", #cond, __FILE__, __LINE__); \
  } while (0)
