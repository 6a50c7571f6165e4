#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace lq {

std::string format_duration(double s) {
  if (s < 0) s = 0;
  if (s < 60) return fmt::format("{:.1f}s", s);
  const int64_t t = int64_t(s + 0.5);
  if (t < 3600) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
}

bool Progress::stderr_is_tty() { return ::isatty(2) == 1; }

Progress::Progress(std::string label, int64_t total, std::string unit, double delay_s)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), delay_(delay_s),
      start_(std::chrono::steady_clock::now()), last_(start_), tty_(stderr_is_tty()) {}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::update(int64_t done) {
  done_ = done;
  const auto now = std::chrono::steady_clock::now();
  const double el = std::chrono::duration<double>(now - start_).count();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (el < delay_) return;
  if (printed_ && since < (tty_ ? 0.25 : 5.0)) return;
  last_ = now;
  print(done, false);
}

void Progress::finish() {
  finished_ = true;
  if (printed_) print(done_, true);
}

void Progress::print(int64_t done, bool final) {
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = el > 0 ? double(done) / el : 0;
  std::string line = fmt::format("{}: {}/{}{}{}", label_, done, total_, unit_.empty() ? "" : " ", unit_);
  if (total_ > 0) line += fmt::format(" ({:.0f}%)", 100.0 * double(done) / double(total_));
  // Slow work (under one item per second, e.g. GPTQ layers) reads better as seconds per item.
  const std::string unit = unit_.empty() ? "items" : unit_;
  if (rate >= 1.0 || done == 0) line += fmt::format(", {:.1f} {}/s", rate, unit);
  else line += fmt::format(", {:.1f} s/{}", 1.0 / rate, unit.size() > 1 && unit.back() == 's' ? unit.substr(0, unit.size() - 1) : unit);
  if (!final && rate > 0 && total_ > done) line += ", ETA " + format_duration(double(total_ - done) / rate);
  if (final) line += ", " + format_duration(el);
  if (tty_) std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  else std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  printed_ = true;
}

}  // namespace lq
