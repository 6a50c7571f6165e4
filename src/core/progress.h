// core/progress.h: progress reporting on stderr for long work.
//
// Silent for the first `delay` seconds (short work prints nothing). On a TTY it
// redraws one line ("\r"); otherwise it prints a plain line at most every few
// seconds, so logs stay readable. Shows done/total, rate and ETA.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace lq {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "", double delay_s = 2.0);
  ~Progress();
  void update(int64_t done);
  void set_total(int64_t total) { total_ = total; }
  void finish();  // prints the final line if anything was printed
  static bool stderr_is_tty();

 private:
  void print(int64_t done, bool final);
  std::string label_, unit_;
  int64_t total_;
  double delay_;
  std::chrono::steady_clock::time_point start_, last_;
  bool printed_ = false, finished_ = false, tty_;
  int64_t done_ = 0;
};

// Seconds to "1m23s" / "4.5s".
std::string format_duration(double s);

}  // namespace lq
