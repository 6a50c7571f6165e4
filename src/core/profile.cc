#include "core/profile.h"

#include <atomic>
#include <mutex>

namespace lq::profile {

namespace {
std::atomic<bool> g_on{false};
std::mutex g_mu;
std::map<std::string, double>& table() {
  static std::map<std::string, double> t;
  return t;
}
}  // namespace

bool enabled() { return g_on.load(std::memory_order_relaxed); }
void set_enabled(bool on) { g_on.store(on); }
void add(const char* name, double seconds) {
  std::lock_guard<std::mutex> l(g_mu);
  table()[name] += seconds;
}
void reset() {
  std::lock_guard<std::mutex> l(g_mu);
  table().clear();
}
std::map<std::string, double> snapshot() {
  std::lock_guard<std::mutex> l(g_mu);
  return table();
}

}  // namespace lq::profile
