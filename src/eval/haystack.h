// eval/haystack.h: haystack units (sentences) for the long-context tasks.
//
// A haystack is an unbounded sequence of units, unit(i) for i = 0, 1, ...,
// each one sentence; prompts take the first n units (joined by joiner()) and
// the generator binary-searches n. Sources:
//  * a fixed list (noise sentences, or sentences split from UTF-8 text files
//    and books) repeated cyclically when too short;
//  * a generator function (deterministic essay-like text, RULER's
//    "needle" haystack of distractor needles), cached as it is extended.
// split_sentences() collapses whitespace runs to one space (as OneRuler does)
// and cuts after . ! ? (followed by space) and after the full-width / CJK and
// other-script terminators 。！？ ． ｡ । ۔ ؟ (no space needed), keeping closing
// quotes and brackets with their sentence; over-long pieces are cut at spaces
// (or, for text without spaces, at code-point boundaries) so a unit stays
// below max_unit_bytes and the fit granularity stays fine.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace lq {

std::vector<std::string> split_sentences(const std::string& text, size_t max_unit_bytes = 1024);

// Deterministic English essay-like sentence number i of the generated text
// with the given seed (a pure function of (seed, i)).
std::string essay_sentence(uint64_t seed, int64_t i);

class Haystack {
 public:
  using Generator = std::function<std::string(int64_t)>;
  static Haystack from_units(std::vector<std::string> units, std::string joiner);
  static Haystack from_generator(Generator gen, std::string joiner);
  // Sentences of the given UTF-8 files, concatenated in order (each file
  // separately split). Throws lq::Error naming an unreadable/empty file.
  static Haystack from_files(const std::vector<std::string>& paths, std::string joiner);

  const std::string& unit(int64_t i) const;
  const std::string& joiner() const { return joiner_; }
  // Units of the fixed list (0 for a generated haystack).
  size_t cycle() const { return units_.size(); }
  bool generated() const { return static_cast<bool>(gen_); }

 private:
  std::vector<std::string> units_;
  mutable std::vector<std::string> cache_;
  Generator gen_;
  std::string joiner_ = " ";
};

}  // namespace lq
