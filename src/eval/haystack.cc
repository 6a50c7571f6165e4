// eval/haystack.cc: sentence splitting, generated essay text, Haystack.
#include "eval/haystack.h"

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "eval/scorers.h"
#include "eval/tasks_rng.h"

namespace lq {

namespace {

bool is_closer(char32_t c) {
  switch (c) {
    case U'"': case U'\'': case U')': case U']': case U'}': case U'\u201D': case U'\u2019': case U'\u00BB':
    case U'\u300D': case U'\u300F': case U'\uFF09': case U'\u3011': case U'\u300B': case U'\u3009':
    case U'\uFF02': case U'\uFF3D':
      return true;
    default:
      return false;
  }
}
bool is_spaced_terminator(char32_t c) { return c == U'.' || c == U'!' || c == U'?'; }
bool is_unspaced_terminator(char32_t c) {
  switch (c) {
    case U'\u3002': case U'\uFF01': case U'\uFF1F': case U'\uFF0E': case U'\uFF61':  // 。！？．｡
    case U'\u0964': case U'\u0965':                                                   // । ॥
    case U'\u06D4': case U'\u061F':                                                   // ۔ ؟
      return true;
    default:
      return false;
  }
}

// Append piece to out, cutting pieces longer than max_bytes at spaces (or at
// code points when there is no space in range).
void push_bounded(std::vector<std::string>& out, const std::u32string& piece, size_t max_bytes) {
  std::string s = uni::encode(piece);
  if (s.empty()) return;
  if (s.size() <= max_bytes) {
    out.push_back(std::move(s));
    return;
  }
  size_t b = 0;
  while (b < piece.size()) {
    size_t bytes = 0, e = b, last_space = std::string::npos;
    while (e < piece.size()) {
      size_t cb = uni::encode(piece[e]).size();
      if (bytes + cb > max_bytes && e > b) break;
      if (piece[e] == U' ') last_space = e;
      bytes += cb;
      ++e;
    }
    if (e < piece.size() && last_space != std::string::npos && last_space > b) e = last_space;
    std::u32string chunk = piece.substr(b, e - b);
    while (!chunk.empty() && chunk.back() == U' ') chunk.pop_back();
    size_t lead = 0;
    while (lead < chunk.size() && chunk[lead] == U' ') ++lead;
    if (lead < chunk.size()) out.push_back(uni::encode(chunk.substr(lead)));
    b = e;
    while (b < piece.size() && piece[b] == U' ') ++b;
  }
}

}  // namespace

std::vector<std::string> split_sentences(const std::string& text, size_t max_unit_bytes) {
  LQ_CHECK(max_unit_bytes >= 16, "split_sentences: max_unit_bytes {} is too small", max_unit_bytes);
  // Collapse every whitespace run to one space (OneRuler: re.sub(r'\s+', ' ')).
  std::u32string in = uni::decode(text), u;
  u.reserve(in.size());
  for (char32_t c : in) {
    if (uni::py_isspace(c)) {
      if (!u.empty() && u.back() != U' ') u.push_back(U' ');
    } else if (c != U'\uFEFF') {  // drop byte-order marks
      u.push_back(c);
    }
  }
  std::vector<std::string> out;
  size_t start = 0, i = 0;
  while (i < u.size()) {
    char32_t c = u[i];
    bool spaced = is_spaced_terminator(c), unspaced = is_unspaced_terminator(c);
    if (!spaced && !unspaced) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < u.size() && (is_spaced_terminator(u[j]) || is_unspaced_terminator(u[j]) || is_closer(u[j]))) ++j;
    if (unspaced || j == u.size() || u[j] == U' ') {
      size_t b = start;
      while (b < j && u[b] == U' ') ++b;
      push_bounded(out, u.substr(b, j - b), max_unit_bytes);
      while (j < u.size() && u[j] == U' ') ++j;
      start = j;
    }
    i = j;
  }
  if (start < u.size()) {
    size_t b = start;
    while (b < u.size() && u[b] == U' ') ++b;
    std::u32string rest = u.substr(b);
    while (!rest.empty() && rest.back() == U' ') rest.pop_back();
    push_bounded(out, rest, max_unit_bytes);
  }
  return out;
}

std::string essay_sentence(uint64_t seed, int64_t i) {
  static const char* const subj[] = {"The founder", "A good programmer", "Every startup", "The investor",
                                     "Our team", "A curious student", "The old company", "Most people",
                                     "A small group", "The best writer", "An early user", "The market"};
  static const char* const verb[] = {"builds", "questions", "ignores", "discovers", "underestimates", "explains",
                                     "rewrites", "measures", "borrows", "defends", "simplifies", "notices"};
  static const char* const obj[] = {"the hardest problem", "a simple idea", "what users want", "the wrong metric",
                                    "an unpopular opinion", "the first version", "a quiet habit",
                                    "the cost of delay", "a better design", "the real reason",
                                    "an honest answer", "the next step"};
  static const char* const tail[] = {"before anyone else does", "because it seems obvious later",
                                     "when nobody is watching", "in the middle of the night",
                                     "after a long argument", "without asking permission", "for surprisingly long",
                                     "with more care than expected", "at the worst possible time",
                                     "as if it were easy", "long after the deadline", "in plain words"};
  static const char* const lead[] = {"", "", "", "Usually, ", "In practice, ", "Sometimes ", "Oddly enough, ",
                                     "Years later, ", "Of course, ", "At first, "};
  uint64_t s = mix64(seed, static_cast<uint64_t>(i));
  TaskRng r(s);
  std::string first = lead[r.below(std::size(lead))];
  std::string sb = subj[r.below(std::size(subj))];
  if (!first.empty()) sb[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(sb[0])));
  return first + sb + " " + verb[r.below(std::size(verb))] + " " + obj[r.below(std::size(obj))] + " " +
         tail[r.below(std::size(tail))] + ".";
}

Haystack Haystack::from_units(std::vector<std::string> units, std::string joiner) {
  LQ_CHECK(!units.empty(), "haystack: no sentences");
  Haystack h;
  h.units_ = std::move(units);
  h.joiner_ = std::move(joiner);
  return h;
}

Haystack Haystack::from_generator(Generator gen, std::string joiner) {
  Haystack h;
  h.gen_ = std::move(gen);
  h.joiner_ = std::move(joiner);
  return h;
}

Haystack Haystack::from_files(const std::vector<std::string>& paths, std::string joiner) {
  LQ_CHECK(!paths.empty(), "haystack: no files given");
  std::vector<std::string> units;
  for (const auto& p : paths) {
    std::ifstream f(p, std::ios::binary);
    LQ_CHECK(f.good(), "haystack: cannot open '{}'", p);
    std::stringstream ss;
    ss << f.rdbuf();
    auto s = split_sentences(uni::sanitize(ss.str()));
    LQ_CHECK(!s.empty(), "haystack: '{}' contains no text", p);
    units.insert(units.end(), std::make_move_iterator(s.begin()), std::make_move_iterator(s.end()));
  }
  return from_units(std::move(units), std::move(joiner));
}

const std::string& Haystack::unit(int64_t i) const {
  LQ_ASSERT(i >= 0);
  if (!gen_) return units_[static_cast<size_t>(i) % units_.size()];
  while (cache_.size() <= static_cast<size_t>(i)) cache_.push_back(gen_(static_cast<int64_t>(cache_.size())));
  return cache_[static_cast<size_t>(i)];
}

}  // namespace lq
