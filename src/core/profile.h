// core/profile.h: optional wall-time accounting per operation (for `bench --profile`).
// Disabled by default: a disabled ScopedTimer costs one branch.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace lq::profile {

bool enabled();
void set_enabled(bool on);
void add(const char* name, double seconds);
void reset();
// name -> seconds, accumulated since the last reset.
std::map<std::string, double> snapshot();

class ScopedTimer {
 public:
  explicit ScopedTimer(const char* name) : name_(enabled() ? name : nullptr) {
    if (name_) t0_ = std::chrono::steady_clock::now();
  }
  ~ScopedTimer() {
    if (name_) add(name_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
  }

 private:
  const char* name_;
  std::chrono::steady_clock::time_point t0_;
};

// Consecutive phases of one scope: PhaseTimer t("a"); ...; t.next("b"); ...
class PhaseTimer {
 public:
  explicit PhaseTimer(const char* first) { start(first); }
  ~PhaseTimer() { stop(); }
  void next(const char* name) { stop(); start(name); }
  // Ends the current phase early (the destructor then adds nothing).
  void stop() {
    if (name_) add(name_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
    name_ = nullptr;
  }

 private:
  void start(const char* name) {
    name_ = enabled() ? name : nullptr;
    if (name_) t0_ = std::chrono::steady_clock::now();
  }
  const char* name_ = nullptr;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace lq::profile
