#include "cli/common.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/threads.h"

namespace lq::cli {

void add_threads_option(CLI::App* cmd, int* threads) {
  cmd->add_option("-t,--threads", *threads, "worker threads (0 = all hardware threads)")->capture_default_str();
}

void apply_threads(int threads) {
  LQ_CHECK(threads >= 0, "--threads must be >= 0, got {}", threads);
  set_num_threads(threads);
}

std::vector<int32_t> parse_id_list(const std::string& s, const std::string& flag) {
  std::vector<int32_t> ids;
  std::string tok;
  auto flush = [&]() {
    if (tok.empty()) return;
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (...) {
      used = 0;
    }
    if (used != tok.size() || v < 0 || v > INT32_MAX) fail("{}: '{}' is not a valid token id", flag, tok);
    ids.push_back(int32_t(v));
    tok.clear();
  };
  for (char ch : s) {
    if (ch == ',' || ch == ' ' || ch == '[' || ch == ']' || ch == '\n' || ch == '\t') flush();
    else tok += ch;
  }
  flush();
  LQ_CHECK(!ids.empty(), "{}: no token ids given", flag);
  return ids;
}

void print_json(const nlohmann::json& j, bool pretty) {
  const std::string s = pretty ? j.dump(2) : j.dump();
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

int64_t peak_rss_bytes() {
  // VmHWM from /proc is exact; ru_maxrss (KiB) as a fallback.
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return int64_t(ru.ru_maxrss) * 1024;
}

int64_t current_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}


}  // namespace lq::cli
