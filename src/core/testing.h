// core/testing.h: helpers for tests (header only, not part of the library API).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

namespace lq::testing {

// The project's ../shared directory (fixtures, tokenizers, data), or "" when it
// is absent (a user's fresh clone). LQ_SHARED_DIR overrides the location.
inline std::string shared_dir() {
  std::string d;
  if (const char* e = std::getenv("LQ_SHARED_DIR")) d = e;
  else d = std::string(LQ_SOURCE_DIR) + "/../shared";
  struct stat st {};
  if (::stat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return "";
  return d;
}

// Directory of the repository (for fixtures committed in-tree).
inline std::string source_dir() { return LQ_SOURCE_DIR; }

// A model fixture ("tiny-llama31", "tiny-qwen25"): ../shared/fixtures/<name> when
// ../shared is present, else the copy committed under tests/data/fixtures/<name>
// (identical files), so the golden tests always run.
inline std::string fixture_dir(const std::string& name) {
  const std::string s = shared_dir();
  if (!s.empty()) return s + "/fixtures/" + name;
  return source_dir() + "/tests/data/fixtures/" + name;
}

// A fresh directory ::testing::TempDir() + prefix + random suffix, removed with
// everything in it when the test program exits (so runs do not pile up
// directories in /tmp: before session 6 every ctest run left ~100 behind, and
// they filled this machine's disk). Throws std::runtime_error if it cannot be made.
inline std::string temp_dir(const std::string& prefix) {
  struct Registry {
    std::mutex mu;
    std::vector<std::string> dirs;
    ~Registry() {
      for (const auto& d : dirs) {
        std::error_code ec;
        std::filesystem::remove_all(d, ec);  // best effort at exit
      }
    }
  };
  static Registry reg;
  std::string t = ::testing::TempDir() + prefix + "XXXXXX";
  if (::mkdtemp(t.data()) == nullptr) throw std::runtime_error("cannot create a temporary directory " + t);
  std::lock_guard<std::mutex> lock(reg.mu);
  reg.dirs.push_back(t);
  return t;
}

}  // namespace lq::testing

// Use at the top of a test that needs ../shared: skips with a clear message if absent.
#define LQ_REQUIRE_SHARED(var)                                                        \
  const std::string var = ::lq::testing::shared_dir();                                \
  if (var.empty()) GTEST_SKIP() << "../shared is absent (set LQ_SHARED_DIR); skipping"
