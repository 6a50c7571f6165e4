// eval/tasks.cc: task registry, NIAH generators (RULER, OneRuler), budget
// fitting, JSONL I/O and file scoring. See tasks.h for the contracts.
#include "eval/tasks.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "core/error.h"
#include "eval/haystack.h"
#include "eval/nocha.h"
#include "eval/qa.h"
#include "io/tokenizer.h"
#include "eval/scorers.h"
#include "eval/tasks_rng.h"

namespace lq {

// ---- counters ---------------------------------------------------------------

PromptCounter byte_counter(int64_t overhead) {
  PromptCounter c;
  c.count = [overhead](const std::string& m, const std::string& a) {
    return overhead + static_cast<int64_t>((m.size() + a.size() + 3) / 4);
  };
  c.count_piece = [](const std::string& t) { return static_cast<int64_t>((t.size() + 3) / 4); };
  return c;
}

namespace {
int64_t count_words(const std::string& s) {
  int64_t n = 0;
  bool in = false;
  for (unsigned char ch : s) {
    bool sp = ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r';
    if (!sp && !in) ++n;
    in = !sp;
  }
  return n;
}
}  // namespace

PromptCounter word_counter(int64_t overhead) {
  PromptCounter c;
  c.count = [overhead](const std::string& m, const std::string& a) {
    return overhead + count_words(m) + count_words(a);
  };
  c.count_piece = [](const std::string& t) { return count_words(t); };
  return c;
}

// ---- registry ---------------------------------------------------------------

namespace {
const char* kRulerNiahPrefix = " The special magic {type_needle_v} for {query} mentioned in the provided text are";
}

const std::vector<TaskInfo>& task_registry() {
  static const std::vector<TaskInfo> r = {
      {"ruler", "niah_single_1", "NIAH, noise haystack, word -> 7-digit number", 128, kRulerNiahPrefix,
       "string_match_all", true},
      {"ruler", "niah_single_2", "NIAH, essay haystack, word -> 7-digit number", 128, kRulerNiahPrefix,
       "string_match_all", true},
      {"ruler", "niah_single_3", "NIAH, essay haystack, word -> UUID", 128, kRulerNiahPrefix, "string_match_all",
       true},
      {"ruler", "niah_multikey_1", "NIAH, essay haystack, 4 keys (3 distractors), word -> number", 128,
       kRulerNiahPrefix, "string_match_all", true},
      {"ruler", "niah_multikey_2", "NIAH, haystack of distractor needles, word -> number", 128, kRulerNiahPrefix,
       "string_match_all", true},
      {"ruler", "niah_multikey_3", "NIAH, haystack of distractor needles, UUID -> UUID", 128, kRulerNiahPrefix,
       "string_match_all", true},
      {"ruler", "niah_multivalue", "NIAH, essay haystack, one key with 4 values", 128, kRulerNiahPrefix,
       "string_match_all", true},
      {"ruler", "niah_multiquery", "NIAH, essay haystack, 4 keys all asked", 128, kRulerNiahPrefix,
       "string_match_all", true},
      {"ruler", "vt", "variable tracking (1 chain, 4 hops, noise haystack)", 30,
       " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
       "assgined the value {query}, they are: ",
       "string_match_all", true},
      {"ruler", "cwe", "common words extraction (10 words, freq 30 vs 3; 6 vs 1 below 4096 tokens)", 120,
       " Answer: The top 10 words that appear most often in the list are:", "string_match_all", true},
      {"ruler", "fwe", "frequent words extraction (Zipf alpha 2)", 50,
       " Answer: According to the coded text above, the three most frequently appeared words are:",
       "string_match_all", true},
      {"oneruler", "niah_single", "NIAH, book haystack, noun -> 7-digit number", 30, "", "oneruler_niah", true},
      {"oneruler", "niah_multikey", "NIAH, 4 keys (3 distractors)", 30, "", "oneruler_niah", true},
      {"oneruler", "niah_multivalue", "NIAH, one key with 4 values", 30, "", "oneruler_niah", true},
      {"oneruler", "niah_multiquery", "NIAH, 2 keys both asked", 30, "", "oneruler_niah", true},
      {"oneruler", "niah_none", "NIAH, 4 needles, asked key absent: answer is the none word", 30, "",
       "oneruler_none", true},
      {"oneruler", "cwe_easy", "common words extraction (freq 30 vs 3; 10 vs 1 at <= 8000 tokens)", 50, "", "oneruler_cwe", true},
      {"oneruler", "cwe", "common words extraction (freq 20 vs 10; 10 vs 5 at <= 8000 tokens)", 50, "", "oneruler_cwe", true},
      {"nocha", "claims", "NoCha claim verification over whole books, pair accuracy", 800, "", "nocha_claim",
       true},
      {"qa", "qa", "QA from user JSONL with distractor documents", 32, " Answer:", "qa_f1", true},
  };
  return r;
}

const TaskInfo& find_task(const std::string& suite, const std::string& name) {
  for (const auto& t : task_registry())
    if (t.suite == suite && t.name == name) return t;
  std::string known;
  for (const auto& t : task_registry()) known += (known.empty() ? "" : ", ") + t.id();
  fail("unknown task '{}/{}' (known: {})", suite, name, known);
}

const TaskInfo& find_task(const std::string& id) {
  auto slash = id.find('/');
  LQ_CHECK(slash != std::string::npos, "task '{}' must be written SUITE/TASK, e.g. ruler/niah_single_1", id);
  return find_task(id.substr(0, slash), id.substr(slash + 1));
}

std::vector<std::string> task_languages(const TaskInfo& t, const LanguageSet& langs) {
  if (t.suite != "oneruler") return {"en"};
  if (t.name != "cwe" && t.name != "cwe_easy") return langs.codes();
  // CWE needs a word list: a OneRuler dictionary, or the built-in English one.
  std::vector<std::string> out;
  for (const auto& c : langs.codes())
    if (c == "en" || !langs.get(c).dictionary_file.empty()) out.push_back(c);
  return out;
}

nlohmann::json task_list_json(const LanguageSet& langs) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& t : task_registry()) {
    arr.push_back({{"suite", t.suite},
                   {"task", t.name},
                   {"id", t.id()},
                   {"languages", task_languages(t, langs)},
                   {"gen_tokens", t.gen_tokens},
                   {"answer_prefix", t.answer_prefix},
                   {"scorer", t.scorer},
                   {"implemented", t.implemented},
                   {"description", t.description}});
  }
  return arr;
}

int64_t parse_length(const std::string& s0) {
  std::string s = s0;
  LQ_CHECK(!s.empty(), "length is empty (use e.g. 8k, 32k, 128k or 5000)");
  int64_t mult = 1;
  char last = s.back();
  if (last == 'k' || last == 'K') mult = 1024;
  else if (last == 'm' || last == 'M') mult = 1024 * 1024;
  if (mult != 1) s.pop_back();
  LQ_CHECK(!s.empty() && s.size() <= 12 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }),
           "bad length '{}' (use e.g. 8k, 32k, 128k or 5000)", s0);
  int64_t v = std::stoll(s) * mult;
  LQ_CHECK(v > 0, "length '{}' must be positive", s0);
  return v;
}

uint64_t example_seed(const std::string& suite, const std::string& task, int64_t length, const std::string& lang,
                      uint64_t seed, int64_t index) {
  uint64_t h = fnv1a64(suite);
  h = mix64(h, fnv1a64(task));
  h = mix64(h, static_cast<uint64_t>(length));
  h = mix64(h, fnv1a64(lang));
  h = mix64(h, seed);
  return mix64(h, static_cast<uint64_t>(index));
}

// ---- generation helpers -----------------------------------------------------

std::vector<double> parse_depths(const std::string& s) {
  std::vector<double> out;
  std::string tok;
  auto flush = [&] {
    if (tok.empty()) return;
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(tok, &used);
    } catch (...) {
      used = 0;
    }
    LQ_CHECK(used == tok.size() && std::isfinite(v), "--depths: '{}' is not a number", tok);
    LQ_CHECK(v >= 0.0 && v <= 100.0, "--depths: {} is outside 0..100 (depths are percentages)", tok);
    out.push_back(v);
    tok.clear();
  };
  for (char c : s) {
    if (c == ',' || c == ' ' || c == '[' || c == ']' || c == '\t' || c == '\n') flush();
    else tok.push_back(c);
  }
  flush();
  LQ_CHECK(!out.empty(), "--depths: no depths given in '{}'", s);
  return out;
}

nlohmann::json GenerateReport::to_json() const {
  return {{"generated", generated}, {"skipped", skipped}, {"skipped_books", skipped_books}, {"notes", notes}};
}

namespace {

// Python str.format subset: {name} from `vars`, {{ and }} -> braces; unknown
// names are an error naming the template.
std::string format_template(const std::string& t, const std::map<std::string, std::string>& vars) {
  std::string out;
  out.reserve(t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    if (c == '{' && i + 1 < t.size() && t[i + 1] == '{') {
      out.push_back('{');
      ++i;
    } else if (c == '}' && i + 1 < t.size() && t[i + 1] == '}') {
      out.push_back('}');
      ++i;
    } else if (c == '{') {
      size_t e = t.find('}', i);
      LQ_CHECK(e != std::string::npos, "template has an unclosed '{{': {}", t);
      std::string name = t.substr(i + 1, e - i - 1);
      auto it = vars.find(name);
      LQ_CHECK(it != vars.end(), "template field {{{}}} has no value in: {}", name, t);
      out += it->second;
      i = e;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string rstrip(std::string s) {
  std::u32string u = uni::decode(s);
  while (!u.empty() && uni::py_isspace(u.back())) u.pop_back();
  return uni::encode(u);
}

std::string random_number(TaskRng& r) { return std::to_string(r.range(1000000, 9999999)); }

std::string random_uuid(TaskRng& r) {
  uint64_t hi = r.next(), lo = r.next();
  hi = (hi & ~0xF000ull) | 0x4000ull;                       // version 4
  lo = (lo & ~(0xC000ull << 48)) | (0x8000ull << 48);        // RFC 4122 variant
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08llx-%04llx-%04llx-%04llx-%012llx", (unsigned long long)(hi >> 32),
                (unsigned long long)((hi >> 16) & 0xFFFF), (unsigned long long)(hi & 0xFFFF),
                (unsigned long long)(lo >> 48), (unsigned long long)(lo & 0xFFFFFFFFFFFFull));
  return buf;
}

// RULER-style word keys "adjective-noun" (our own lists; 48 x 48 = 2304 keys).
std::string random_word_key(TaskRng& r) {
  static const char* const adj[] = {
      "amber", "brave", "calm", "dusty", "eager", "faint", "gentle", "hollow", "icy", "jolly", "keen", "lively",
      "mellow", "narrow", "odd", "proud", "quiet", "rapid", "silent", "tidy", "upbeat", "vivid", "wary", "young",
      "zesty", "bitter", "clever", "damp", "early", "fierce", "grumpy", "hasty", "idle", "jagged", "kind", "lucky",
      "misty", "noisy", "olive", "plain", "rustic", "shiny", "tender", "urban", "vast", "wild", "yellow", "zealous"};
  static const char* const noun[] = {
      "anchor", "badger", "cabbage", "dolphin", "engine", "falcon", "glacier", "harbor", "igloo", "jacket",
      "kettle", "lantern", "meadow", "nectar", "orchard", "pebble", "quiver", "raven", "saddle", "tulip",
      "umbrella", "valley", "walnut", "yacht", "zebra", "button", "canyon", "desert", "ember", "fossil",
      "garlic", "hammer", "island", "jungle", "kitten", "lemon", "marble", "napkin", "oyster", "pepper",
      "quilt", "rocket", "spider", "thimble", "violet", "whistle", "yogurt", "zipper"};
  std::string a = adj[r.below(std::size(adj))];
  return a + "-" + noun[r.below(std::size(noun))];
}

std::string random_of(const std::string& type, TaskRng& r) {
  if (type == "numbers") return random_number(r);
  if (type == "uuids") return random_uuid(r);
  if (type == "words") return random_word_key(r);
  fail("internal: unknown needle type '{}'", type);
}

std::vector<double> pick_depths(const DepthSpec& spec, int64_t index, size_t count, TaskRng& r) {
  std::vector<double> d;
  if (!spec.list.empty()) {
    for (double x : spec.list) LQ_CHECK(x >= 0.0 && x <= 100.0, "needle depth {} is outside 0..100", x);
    for (size_t j = 0; j < count; ++j)
      d.push_back(spec.list[(static_cast<size_t>(index) * count + j) % spec.list.size()]);
    return d;
  }
  LQ_CHECK(spec.grid >= 1, "depth grid must have at least 1 point (got {})", spec.grid);
  std::vector<double> grid;
  for (int g = 0; g < spec.grid; ++g)
    grid.push_back(spec.grid == 1 ? 50.0 : std::round(100.0 * g / (spec.grid - 1)));
  if (count <= grid.size()) {
    for (size_t k : r.sample(grid.size(), count)) d.push_back(grid[k]);
  } else {
    for (size_t j = 0; j < count; ++j) d.push_back(grid[r.below(grid.size())]);
  }
  return d;
}

// ---- budget fitting -----------------------------------------------------------

constexpr int64_t kNoMax = int64_t(1) << 40;

struct Built {
  std::string input;
  std::vector<int64_t> offsets;
  // Filled only by tasks whose needle placement depends on n (qa).
  std::vector<double> depths;
  std::vector<std::string> needles;
};

// One example before fitting: its prompt as a function of the unit count n.
struct Instance {
  std::function<Built(int64_t)> build;
  // W(n): estimated cost of the first n units, strictly increasing in n. Only
  // used to steer the search (recalibrated against exact counts).
  std::function<double(int64_t)> weight;
  double initial_ratio = 1.0;  // tokens per weight unit before any measurement
  int64_t n_min = 0, n_max = kNoMax;
  std::string answer_prefix;
  std::vector<std::string> needles, outputs, queries;
  std::vector<double> depths;
  nlohmann::json meta = nlohmann::json::object();
  std::string exhausted_note;  // note when n_max is reached below the budget
};

struct Fit {
  int64_t n = 0;
  int64_t tokens = 0;     // exact prompt count at n
  bool capped = false;    // n == n_max and the budget was not reached
};

// Largest n with count(n) + gen <= length (see tasks.h). Interpolation from
// the weights for at most 8 probes, then bisection; every probe is an exact
// count, and the result is bracketed by a measured over-budget n + 1 (or n_max).
Fit fit_instance(const Instance& in, int64_t length, int64_t gen, const PromptCounter& counter) {
  const int64_t budget = length - gen;
  LQ_CHECK(budget > 0, "length {} is not larger than the generation budget {}", length, gen);
  auto exact = [&](int64_t n) { return counter.count(in.build(n).input, in.answer_prefix); };
  const int64_t c_min = exact(in.n_min);
  LQ_CHECK(c_min <= budget,
           "length {} is too small: the prompt (template, instructions, needles, question) needs {} tokens "
           "with the smallest haystack, plus {} generation tokens",
           length, c_min, gen);
  int64_t lo = in.n_min, c_lo = c_min, hi = -1;  // hi: smallest n measured over budget
  const double w_min = in.weight(in.n_min);
  double r = in.initial_ratio;
  // Largest n in [lo, upper] with weight(n) <= target (galloping, then bisection).
  auto largest_below = [&](double target, int64_t upper) {
    int64_t g = lo, b = -1, step = 1;
    while (g < upper) {
      int64_t t = std::min(upper, g + step);
      if (in.weight(t) <= target) {
        g = t;
        step *= 2;
      } else {
        b = t;
        break;
      }
    }
    if (b < 0) return g;
    while (b - g > 1) {
      int64_t m = g + (b - g) / 2;
      if (in.weight(m) <= target) g = m;
      else b = m;
    }
    return g;
  };
  int interpolations = 0;
  for (int iter = 0;; ++iter) {
    LQ_CHECK(iter < 400, "internal: budget search did not converge (length {})", length);
    const int64_t upper = hi >= 0 ? hi - 1 : in.n_max;
    if (lo >= upper) break;
    int64_t probe;
    if (interpolations < 8) {
      ++interpolations;
      probe = largest_below(in.weight(lo) + double(budget - c_lo) / r, upper);
    } else if (hi >= 0) {
      probe = lo + (hi - lo) / 2;
    } else {
      probe = std::min(upper, std::max(lo * 2, lo + 1));
    }
    if (probe <= lo) probe = lo + 1;
    const int64_t c = exact(probe);
    if (c <= budget) {
      lo = probe;
      c_lo = c;
    } else {
      hi = probe;
    }
    const double dw = in.weight(probe) - w_min;
    if (dw > 0 && c > c_min) r = std::max(1e-3, double(c - c_min) / dw);
  }
  return {lo, c_lo, hi < 0};
}

// Lazily extended prefix sums of per-unit weights (each clamped to >= 0.25 so
// W is strictly increasing).
class PrefixWeights {
 public:
  explicit PrefixWeights(std::function<double(int64_t)> unit) : unit_(std::move(unit)) {}
  double operator()(int64_t n) {
    LQ_ASSERT(n >= 0 && n < kNoMax);
    while (static_cast<int64_t>(w_.size()) <= n)
      w_.push_back(w_.back() + std::max(unit_(static_cast<int64_t>(w_.size()) - 1), 0.25));
    return w_[static_cast<size_t>(n)];
  }

 private:
  std::function<double(int64_t)> unit_;
  std::vector<double> w_{0.0};
};

// ---- NIAH-style plans: fixed needles between haystack units ---------------------

struct Plan {
  std::string head, tail;             // user message = head + context + tail
  std::string answer_prefix;
  std::vector<std::string> needles;   // in text order
  std::vector<double> depths;         // parallel to needles, ascending
  std::vector<std::string> outputs, queries;
  const Haystack* haystack = nullptr;
  std::shared_ptr<Haystack> own_haystack;  // per-example haystacks (distractor needles)
};

Built build_input(const Plan& p, int64_t n) {
  const Haystack& h = *p.haystack;
  const std::string& j = h.joiner();
  std::vector<int64_t> pos;
  for (double d : p.depths) pos.push_back(std::min<int64_t>(n, static_cast<int64_t>(std::floor(n * d / 100.0))));
  Built b;
  std::string& s = b.input;
  s = p.head;
  bool first = true;
  size_t k = 0;
  for (int64_t u = 0; u <= n; ++u) {
    while (k < p.needles.size() && pos[k] == u) {
      if (!first) s += j;
      first = false;
      b.offsets.push_back(static_cast<int64_t>(s.size()));
      s += p.needles[k++];
    }
    if (u < n) {
      if (!first) s += j;
      first = false;
      s += h.unit(u);
    }
  }
  s += p.tail;
  return b;
}

// Per-unit weight of a haystack: count_piece(joiner + unit) (or bytes when
// the counter has no count_piece), cached for cyclic haystacks by position in
// the cycle and for generated ones by index.
class UnitWeights {
 public:
  UnitWeights(const Haystack* h, const PromptCounter& c) : h_(h), c_(c) {}
  double operator()(int64_t i) {
    size_t key = h_->generated() ? static_cast<size_t>(i) : static_cast<size_t>(i) % h_->cycle();
    while (cache_.size() <= key) {
      int64_t u = static_cast<int64_t>(cache_.size());
      const std::string piece = h_->joiner() + h_->unit(u);
      cache_.push_back(c_.count_piece ? double(c_.count_piece(piece)) : double(piece.size()));
    }
    return cache_[key];
  }
  bool tokens() const { return static_cast<bool>(c_.count_piece); }

 private:
  const Haystack* h_;
  const PromptCounter& c_;
  std::vector<double> cache_;
};

Instance plan_instance(std::shared_ptr<Plan> p, std::shared_ptr<UnitWeights> uw) {
  Instance in;
  in.answer_prefix = p->answer_prefix;
  in.needles = p->needles;
  in.depths = p->depths;
  in.outputs = p->outputs;
  in.queries = p->queries;
  in.initial_ratio = uw->tokens() ? 1.0 : 0.3;
  auto W = std::make_shared<PrefixWeights>([uw](int64_t i) { return (*uw)(i); });
  in.weight = [W](int64_t n) { return (*W)(n); };
  in.build = [p](int64_t n) { return build_input(*p, n); };
  return in;
}

struct NiahConfig {
  int k = 1, v = 1, q = 1;
  std::string haystack = "essay";  // noise | essay | needle | book
  std::string key_type = "words", value_type = "numbers";
  bool relevant = true;
};

NiahConfig niah_config(const std::string& suite, const std::string& task) {
  NiahConfig c;
  if (suite == "ruler") {
    if (task == "niah_single_1") c.haystack = "noise";
    else if (task == "niah_single_2") {}
    else if (task == "niah_single_3") c.value_type = "uuids";
    else if (task == "niah_multikey_1") c.k = 4;
    else if (task == "niah_multikey_2") c.haystack = "needle";
    else if (task == "niah_multikey_3") { c.haystack = "needle"; c.key_type = "uuids"; c.value_type = "uuids"; }
    else if (task == "niah_multivalue") c.v = 4;
    else if (task == "niah_multiquery") { c.k = 4; c.q = 4; }
    else if (task == "vt") c.haystack = "noise";
    else fail("internal: {} is not a RULER NIAH task", task);
  } else {
    c.haystack = "book";
    if (task == "niah_single") {}
    else if (task == "niah_multikey") c.k = 4;
    else if (task == "niah_multivalue") c.v = 4;
    else if (task == "niah_multiquery") { c.k = 2; c.q = 2; }
    else if (task == "niah_none") { c.k = 4; c.relevant = false; }
    else fail("internal: {} is not a OneRuler NIAH task", task);
  }
  return c;
}

constexpr uint64_t kEssaySeed = 0x5EED0E55A7ull;  // the generated essay is the same for every example

// The shared (per generate call) haystack for a NIAH task.
std::unique_ptr<Haystack> shared_haystack(const TaskOptions& opt, const NiahConfig& c, const LanguagePack& pack) {
  std::string joiner = pack.no_spaces ? "" : " ";
  std::string kind = opt.haystack;
  if (!opt.haystack_files.empty()) kind = "files";
  if (kind.empty()) kind = c.haystack;
  if (kind == "needle") return nullptr;  // per example
  if (kind == "files") {
    LQ_CHECK(!opt.haystack_files.empty(), "haystack 'files' needs --haystack FILE...");
    return std::make_unique<Haystack>(Haystack::from_files(opt.haystack_files, joiner));
  }
  if (kind == "book") {
    if (!pack.book_files.empty())
      return std::make_unique<Haystack>(Haystack::from_files(pack.book_files, joiner));
    kind = pack.code == "en" ? "essay" : "noise";  // no books: fall back to built-in text
  }
  if (kind == "essay") {
    LQ_CHECK(pack.code == "en",
             "the generated essay haystack is English only; use --haystack FILE or --oneruler-data for '{}'",
             pack.code);
    return std::make_unique<Haystack>(
        Haystack::from_generator([](int64_t i) { return essay_sentence(kEssaySeed, i); }, " "));
  }
  if (kind == "noise") {
    LQ_CHECK(!pack.noise_sentences.empty(), "language '{}' has no built-in noise haystack; use --haystack FILE",
             pack.code);
    return std::make_unique<Haystack>(Haystack::from_units(pack.noise_sentences, joiner));
  }
  fail("unknown haystack kind '{}' (noise, essay, book, files)", kind);
}

std::shared_ptr<Plan> plan_ruler_niah(const TaskOptions& opt, const NiahConfig& c, int64_t index, TaskRng& rng,
                                      const Haystack* shared, uint64_t ex_seed) {
  auto pp = std::make_shared<Plan>();
  Plan& p = *pp;
  std::vector<std::string> keys;
  std::set<std::string> used;
  while (static_cast<int>(keys.size()) < c.k) {
    std::string key = random_of(c.key_type, rng);
    if (used.insert(key).second) keys.push_back(key);
  }
  std::vector<std::vector<std::string>> values(keys.size());
  std::vector<std::string> needles;
  for (size_t i = 0; i < keys.size(); ++i)
    for (int j = 0; j < c.v; ++j) {
      values[i].push_back(random_of(c.value_type, rng));
      needles.push_back("One of the special magic " + c.value_type + " for " + keys[i] + " is: " + values[i].back() +
                        ".");
    }
  rng.shuffle(needles);
  auto depths = pick_depths(opt.depths, index, needles.size(), rng);
  std::sort(depths.begin(), depths.end());
  p.needles = needles;
  p.depths = depths;
  for (size_t qi : rng.sample(keys.size(), static_cast<size_t>(c.q))) {
    p.queries.push_back(keys[qi]);
    for (const auto& v : values[qi]) p.outputs.push_back(v);
  }
  std::string query = p.queries[0];
  if (p.queries.size() > 1) {
    query.clear();
    for (size_t i = 0; i + 1 < p.queries.size(); ++i) query += (i ? ", " : "") + p.queries[i];
    query += ", and " + p.queries.back();
  }
  std::map<std::string, std::string> vars = {{"type_needle_v", c.value_type}, {"query", query}};
  p.head = format_template(
      "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I will "
      "quiz you about the {type_needle_v} afterwards.\n",
      vars);
  p.tail = format_template("\nWhat are all the special magic {type_needle_v} for {query} mentioned in the provided text?",
                           vars);
  p.answer_prefix = format_template(kRulerNiahPrefix, vars);
  if (shared) {
    p.haystack = shared;
  } else {  // distractor needles, never using a real key
    std::set<std::string> real(keys.begin(), keys.end());
    std::string kt = c.key_type, vt = c.value_type;
    p.own_haystack = std::make_shared<Haystack>(Haystack::from_generator(
        [real, kt, vt, ex_seed](int64_t i) {
          TaskRng r(mix64(ex_seed ^ 0xD15EA5Eull, static_cast<uint64_t>(i)));
          std::string key;
          do key = random_of(kt, r);
          while (real.count(key));
          return "One of the special magic " + vt + " for " + key + " is: " + random_of(vt, r) + ".";
        },
        "\n"));
    p.haystack = p.own_haystack.get();
  }
  return pp;
}

std::shared_ptr<Plan> plan_oneruler_niah(const TaskOptions& opt, const NiahConfig& c, const LanguagePack& pack,
                                         int64_t index, TaskRng& rng, const Haystack* shared) {
  auto pp = std::make_shared<Plan>();
  Plan& p = *pp;
  const auto& nouns = pack.nouns;
  LQ_CHECK(nouns.size() > static_cast<size_t>(c.k), "language '{}' has only {} nouns, task needs {}", pack.code,
           nouns.size(), c.k + 1);
  std::vector<size_t> kidx = rng.sample(nouns.size(), static_cast<size_t>(c.k));
  std::vector<std::string> keys;
  for (size_t i : kidx) keys.push_back(nouns[i]);
  std::vector<std::vector<std::string>> values(keys.size());
  std::vector<std::string> needles;
  for (size_t i = 0; i < keys.size(); ++i)
    for (int j = 0; j < c.v; ++j) {
      values[i].push_back(random_number(rng));
      needles.push_back(
          rstrip(format_template(pack.niah.needle_numbers, {{"key", keys[i]}, {"value", values[i].back()}})) +
          pack.period);
    }
  rng.shuffle(needles);
  auto depths = pick_depths(opt.depths, index, needles.size(), rng);
  std::sort(depths.begin(), depths.end());
  p.needles = needles;
  p.depths = depths;
  if (c.relevant) {
    for (size_t qi : rng.sample(keys.size(), static_cast<size_t>(c.q))) {
      p.queries.push_back(keys[qi]);
      for (const auto& v : values[qi]) p.outputs.push_back(v);
    }
  } else {
    std::vector<size_t> rest;
    std::set<size_t> taken(kidx.begin(), kidx.end());
    for (size_t i = 0; i < nouns.size(); ++i)
      if (!taken.count(i)) rest.push_back(i);
    p.queries.push_back(nouns[rest[rng.below(rest.size())]]);
    p.outputs.push_back(pack.niah.none);
  }
  const auto& n = pack.niah;
  const std::string sp = pack.no_spaces ? "" : " ";
  std::string question = (c.q == 2 ? n.question_multi_numbers : n.question_single_numbers) + sp + n.please_list + sp +
                         n.if_no_numbers;
  std::string answer = n.answer_prefix + sp + n.answer_numbers;
  std::string full = n.task + question + answer;
  size_t at = full.find("{context}");
  LQ_CHECK(at != std::string::npos, "language '{}': the NIAH task prompt has no {{context}}", pack.code);
  std::map<std::string, std::string> vars = {{"query1", p.queries[0]}};
  if (c.q == 2) vars["query2"] = p.queries[1];
  p.head = format_template(full.substr(0, at), vars);
  p.tail = format_template(full.substr(at + 9), vars);
  p.haystack = shared;
  return pp;
}

// ---- RULER vt: variable tracking ------------------------------------------------
// RULER (variable_tracking.py, num_chains 1, num_hops 4): five distinct
// 5-letter upper-case variables; "VAR X0 = <5-digit value>" and
// "VAR Xj = VAR Xj-1" (j = 1..4) are inserted in chain order among repeated
// noise blocks ("The grass is green. ... There and back again."), one block per
// haystack unit, one statement or block per line. The gold answer is all five
// variables; the query is the value. Like RULER, the prompt starts with one
// solved in-context example (3-letter variables, 4 noise blocks).

const char* kVtNoise = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
const char* kVtIntro = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n";
const char* kVtQuestion = "\nQuestion: Find all variables that are assigned the value {query} in the text above.";
const char* kVtPrefix =
    " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are assgined "
    "the value {query}, they are: ";

std::vector<std::string> vt_variables(TaskRng& rng, int count, int letters) {
  std::vector<std::string> vars;
  std::set<std::string> seen;
  while (static_cast<int>(vars.size()) < count) {
    std::string v;
    for (int i = 0; i < letters; ++i) v.push_back(static_cast<char>('A' + rng.below(26)));
    if (seen.insert(v).second) vars.push_back(v);
  }
  return vars;
}

std::vector<std::string> vt_chain(const std::vector<std::string>& vars, const std::string& value) {
  std::vector<std::string> chain{"VAR " + vars[0] + " = " + value};
  for (size_t j = 1; j < vars.size(); ++j) chain.push_back("VAR " + vars[j] + " = VAR " + vars[j - 1]);
  return chain;
}

std::shared_ptr<Plan> plan_ruler_vt(const TaskOptions& opt, int64_t index, TaskRng& rng, const Haystack* noise) {
  constexpr int kHops = 4;
  auto pp = std::make_shared<Plan>();
  Plan& p = *pp;
  // In-context example.
  auto icl_vars = vt_variables(rng, kHops + 1, 3);
  std::string icl_value = std::to_string(rng.range(10000, 99999));
  std::string value;
  do value = std::to_string(rng.range(10000, 99999));
  while (value == icl_value);
  auto icl_chain = vt_chain(icl_vars, icl_value);
  std::vector<std::string> icl_lines(4, kVtNoise);
  for (size_t j = 0; j < icl_chain.size(); ++j) {
    size_t at = rng.below(icl_lines.size() + 1);
    // Keep chain order: insert after every earlier chain statement.
    size_t last = 0;
    for (size_t k = 0; k < icl_lines.size(); ++k)
      if (icl_lines[k].rfind("VAR ", 0) == 0) last = k + 1;
    icl_lines.insert(icl_lines.begin() + static_cast<std::ptrdiff_t>(std::max(at, last)), icl_chain[j]);
  }
  std::string icl_ctx;
  for (size_t k = 0; k < icl_lines.size(); ++k) icl_ctx += (k ? "\n" : "") + icl_lines[k];
  std::string icl_answer;
  for (size_t k = 0; k < icl_vars.size(); ++k) icl_answer += (k ? " " : "") + icl_vars[k];
  std::map<std::string, std::string> icl_v = {{"query", icl_value}, {"num_v", std::to_string(kHops + 1)}};
  std::string icl = kVtIntro + icl_ctx + format_template(kVtQuestion, icl_v) + format_template(kVtPrefix, icl_v) +
                    icl_answer + "\n\n";
  // The task.
  auto vars = vt_variables(rng, kHops + 1, 5);
  p.needles = vt_chain(vars, value);
  p.depths = pick_depths(opt.depths, index, p.needles.size(), rng);
  std::sort(p.depths.begin(), p.depths.end());
  p.outputs = vars;
  p.queries = {value};
  std::map<std::string, std::string> v = {{"query", value}, {"num_v", std::to_string(kHops + 1)}};
  p.head = icl + kVtIntro;
  p.tail = format_template(kVtQuestion, v);
  p.answer_prefix = format_template(kVtPrefix, v);
  p.haystack = noise;
  return pp;
}

// ---- common words extraction (RULER cwe, OneRuler cwe / cwe_easy) ----------------
// A numbered list "1. w 2. w ..." in which num_cw common words occur rc times
// and every other word ru times, shuffled. The haystack unit is one distinct
// word: n words = num_cw common + (n - num_cw) uncommon. Words come from a
// per-example random permutation of the language's vocabulary (prefix-stable
// in n); past the vocabulary, distinct compounds "a-b" of two vocabulary words
// are used (RULER's rule for long contexts; never equal to a vocabulary word).
// Frequencies: RULER 30/3 (6/1 below 4096 tokens, with a 3/1 few-shot example
// of 20 words instead of 10/3 of 40); OneRuler cwe_easy 30/3 and cwe 20/10,
// each scaled to 10/1 and 10/5 for lengths <= 8000 (as OneRuler does).

struct CweWords {
  std::shared_ptr<const std::vector<std::string>> vocab;
  std::shared_ptr<const std::set<std::string>> vocab_set;
  std::vector<uint32_t> perm;
  size_t singles = 0;  // perm[0..singles) are the single words of the task
  size_t parts_begin = 0;  // compounds use perm[parts_begin..singles) (never a common word)
  std::vector<std::string> seq;  // words in order, extended lazily
  uint64_t compound = 0;

  const std::string& word(int64_t k) {
    while (static_cast<int64_t>(seq.size()) <= k) {
      if (seq.size() < singles) {
        seq.push_back((*vocab)[perm[seq.size()]]);
        continue;
      }
      const uint64_t m = singles - parts_begin;
      for (;;) {
        LQ_CHECK(compound < m * m, "cwe: ran out of distinct words ({} words and their compounds)", singles);
        uint64_t a = parts_begin + compound % m, b = parts_begin + compound / m;
        ++compound;
        if (a == b) continue;
        std::string w = (*vocab)[perm[a]] + "-" + (*vocab)[perm[b]];
        if (!vocab_set->count(w)) {
          seq.push_back(std::move(w));
          break;
        }
      }
    }
    return seq[static_cast<size_t>(k)];
  }
};

std::string numbered_list(const std::vector<const std::string*>& entries) {
  std::string s;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i) s.push_back(' ');
    s += std::to_string(i + 1);
    s += ". ";
    s += *entries[i];
  }
  return s;
}

// entries: common words x rc, then uncommon x ru, shuffled by rng.
std::vector<const std::string*> cwe_entries(const std::vector<const std::string*>& words, size_t num_cw, int rc, int ru,
                                            TaskRng rng) {
  std::vector<const std::string*> e;
  for (size_t i = 0; i < words.size(); ++i)
    for (int k = 0; k < (i < num_cw ? rc : ru); ++k) e.push_back(words[i]);
  rng.shuffle(e);
  return e;
}

Instance cwe_instance(const std::string& suite, const std::string& task, const LanguagePack& pack, int64_t length,
                      std::shared_ptr<const std::vector<std::string>> vocab,
                      std::shared_ptr<const std::set<std::string>> vocab_set, TaskRng& rng, uint64_t ex_seed) {
  constexpr size_t kNumCw = 10;
  const bool ruler = suite == "ruler";
  int rc, ru, fs_words = 0, fs_rc = 0, fs_ru = 0;
  if (ruler) {
    if (length < 4096) { rc = 6; ru = 1; fs_words = 20; fs_rc = 3; fs_ru = 1; }
    else { rc = 30; ru = 3; fs_words = 40; fs_rc = 10; fs_ru = 3; }
  } else if (task == "cwe_easy") {
    rc = length <= 8000 ? 10 : 30;
    ru = length <= 8000 ? 1 : 3;
  } else {
    rc = length <= 8000 ? 10 : 20;
    ru = length <= 8000 ? 5 : 10;
  }
  LQ_CHECK(vocab->size() >= kNumCw + static_cast<size_t>(fs_words) + 2,
           "cwe: the '{}' vocabulary has only {} words", pack.code, vocab->size());
  auto words = std::make_shared<CweWords>();
  words->vocab = vocab;
  words->vocab_set = vocab_set;
  words->perm.resize(vocab->size());
  for (size_t i = 0; i < vocab->size(); ++i) words->perm[i] = static_cast<uint32_t>(i);
  rng.shuffle(words->perm);
  words->singles = vocab->size() - static_cast<size_t>(fs_words);
  words->parts_begin = kNumCw;

  std::string head, tail, prefix, tmpl;  // RULER: head + list + tail; OneRuler: tmpl
  if (ruler) {
    const std::string intro =
        "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones "
        "that appear most often.\n";
    const std::string question = "\nQuestion: What are the 10 most common words in the above list?";
    prefix = " Answer: The top 10 words that appear most often in the list are:";
    std::vector<const std::string*> fw;
    for (int j = 0; j < fs_words; ++j) fw.push_back(&(*vocab)[words->perm[vocab->size() - 1 - static_cast<size_t>(j)]]);
    std::string fs_ctx = numbered_list(cwe_entries(fw, kNumCw, fs_rc, fs_ru, TaskRng(mix64(ex_seed, 0xF5F5ull))));
    std::vector<const std::string*> fs_common(fw.begin(), fw.begin() + kNumCw);
    head = intro + fs_ctx + question + prefix + " " + numbered_list(fs_common) + "\n" + intro;
    tail = question;
  } else {
    // OneRuler: template.format(context=list, query=''), which fills EVERY
    // {context} (prompt/vi/cwe.txt has two, so the list appears twice).
    LQ_CHECK(!pack.cwe_template.empty(), "language '{}' has no CWE prompt (prompt/{}/cwe.txt)", pack.code, pack.code);
    LQ_CHECK(pack.cwe_template.find("{context}") != std::string::npos,
             "language '{}': the CWE prompt has no {{context}}", pack.code);
    tmpl = pack.cwe_template;
    format_template(tmpl, {{"context", ""}, {"query", ""}});  // validates the fields now
  }
  Instance in;
  in.answer_prefix = prefix;
  for (size_t i = 0; i < kNumCw; ++i) in.outputs.push_back(words->word(static_cast<int64_t>(i)));
  in.n_min = kNumCw + 1;
  in.meta = {{"freq_common", rc}, {"freq_uncommon", ru}};
  auto W = std::make_shared<PrefixWeights>([words, rc, ru](int64_t i) {
    // bytes of the word's entries ("123. word ") -- steering only.
    return double((i < static_cast<int64_t>(kNumCw) ? rc : ru) * (words->word(i).size() + 7));
  });
  in.weight = [W](int64_t n) { return (*W)(n); };
  in.initial_ratio = 0.3;
  in.build = [words, head, tail, tmpl, rc, ru, ex_seed](int64_t n) {
    if (n > 0) words->word(n - 1);  // extend first: word() may reallocate the sequence
    std::vector<const std::string*> ws;
    for (int64_t k = 0; k < n; ++k) ws.push_back(&words->seq[static_cast<size_t>(k)]);
    std::string list =
        numbered_list(cwe_entries(ws, kNumCw, rc, ru, TaskRng(mix64(ex_seed ^ 0xC3E0ull, uint64_t(n)))));
    Built b;
    b.input = tmpl.empty() ? head + list + tail : format_template(tmpl, {{"context", list}, {"query", ""}});
    return b;
  };
  return in;
}

// ---- RULER fwe: frequent words extraction ----------------------------------------
// RULER (freq_words_extraction.py, alpha 2): a vocabulary of V = length / 50
// random 6-letter lower-case "coded" words; rank k (1-based) occurs
// floor(n * k^-2 / zeta(2)) times; rank 1 is "..." (noise); the text is all
// occurrences shuffled, space-separated; the answer is ranks 2..4. n (the Zipf
// word budget) is the haystack unit; n_min is the smallest n for which ranks
// 2, 3, 4, 5 have distinct counts and rank 4 occurs.

constexpr double kZeta2 = 1.6449340668482264;  // pi^2 / 6

int64_t fwe_count(int64_t n, int64_t rank) {
  const double k = double(rank);
  return static_cast<int64_t>(double(n) * (1.0 / (k * k)) / kZeta2);
}

Instance fwe_instance(int64_t length, TaskRng& rng, uint64_t ex_seed) {
  const int64_t V = std::max<int64_t>(length / 50, 5);
  auto vocab = std::make_shared<std::vector<std::string>>();
  std::set<std::string> seen{"..."};
  vocab->push_back("...");
  while (static_cast<int64_t>(vocab->size()) < V) {
    std::string w;
    for (int i = 0; i < 6; ++i) w.push_back(static_cast<char>('a' + rng.below(26)));
    if (seen.insert(w).second) vocab->push_back(w);
  }
  Instance in;
  in.outputs = {(*vocab)[1], (*vocab)[2], (*vocab)[3]};
  int64_t n = 1;
  while (!(fwe_count(n, 4) >= 1 && fwe_count(n, 2) > fwe_count(n, 3) && fwe_count(n, 3) > fwe_count(n, 4) &&
           fwe_count(n, 4) > fwe_count(n, 5)))
    ++n;
  in.n_min = n;
  in.answer_prefix = " Answer: According to the coded text above, the three most frequently appeared words are:";
  in.weight = [V](int64_t n) {
    // occurrences (about 2 tokens each) -- steering only; + n/1e6 keeps W strictly increasing.
    double s = 0;
    for (int64_t k = 1; k <= V; ++k) {
      int64_t c = fwe_count(n, k);
      if (c == 0) break;
      s += double(c);
    }
    return 2.0 * s + double(n) * 1e-6;
  };
  in.initial_ratio = 1.0;
  in.meta = {{"vocab_size", V}};
  in.build = [vocab, V, ex_seed](int64_t n) {
    std::vector<const std::string*> occ;
    for (int64_t k = 1; k <= V; ++k) {
      int64_t c = fwe_count(n, k);
      for (int64_t j = 0; j < c; ++j) occ.push_back(&(*vocab)[static_cast<size_t>(k - 1)]);
    }
    TaskRng r(mix64(ex_seed ^ 0xF3E0ull, uint64_t(n)));
    r.shuffle(occ);
    Built b;
    b.input =
        "Read the following coded text and track the frequency of each coded word. Find the three most frequently "
        "appeared coded words. ";
    for (size_t i = 0; i < occ.size(); ++i) {
      if (i) b.input.push_back(' ');
      b.input += *occ[i];
    }
    b.input +=
        "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most "
        "frequently appeared words in the above coded text?";
    return b;
  };
  return in;
}

// ---- QA ----------------------------------------------------------------------------
// RULER's qa layout: "Document i:\n<text>" blocks joined by blank lines, the
// example's own documents among distractors (documents of the other examples,
// de-duplicated, in a per-example random order; the unit is one distractor),
// all shuffled per n. Gold documents are recorded as needles (their text,
// offsets and depth = 100 * position / (documents - 1)).

const char* kQaInstr =
    "Answer the question based on the given documents. Only give me the answer and do not output any other words.";

Instance qa_instance(const std::vector<QaItem>& items, const std::vector<std::string>& pool, int64_t index,
                     const PromptCounter& counter, TaskRng& rng, uint64_t ex_seed) {
  const QaItem& it = items[static_cast<size_t>(index)];
  std::set<std::string> own(it.documents.begin(), it.documents.end());
  auto distract = std::make_shared<std::vector<const std::string*>>();
  for (const auto& d : pool)
    if (!own.count(d)) distract->push_back(&d);
  rng.shuffle(*distract);
  auto gold = std::make_shared<std::vector<std::string>>(it.documents);
  Instance in;
  in.answer_prefix = " Answer:";
  in.outputs = it.answers;
  in.queries = {it.question};
  in.n_max = static_cast<int64_t>(distract->size());
  in.meta = {{"qa_index", index}};
  const bool tok = static_cast<bool>(counter.count_piece);
  auto W = std::make_shared<PrefixWeights>([distract, &counter, tok](int64_t i) {
    const std::string& d = *(*distract)[static_cast<size_t>(i)];
    return tok ? double(counter.count_piece(d)) + 6.0 : double(d.size() + 16);
  });
  in.weight = [W](int64_t n) { return (*W)(n); };
  in.initial_ratio = tok ? 1.0 : 0.3;
  const std::string head = std::string(kQaInstr) + "\n\nThe following are given documents.\n\n";
  const std::string tail = "\n\n" + std::string(kQaInstr) + "\n\nQuestion: " + it.question;
  in.build = [distract, gold, head, tail, ex_seed](int64_t n) {
    // Entries >= 0: gold document index; < 0: distractor -(k + 1).
    std::vector<int64_t> order;
    for (size_t g = 0; g < gold->size(); ++g) order.push_back(static_cast<int64_t>(g));
    for (int64_t k = 0; k < n; ++k) order.push_back(-(k + 1));
    TaskRng r(mix64(ex_seed ^ 0x0A0Aull, uint64_t(n)));
    r.shuffle(order);
    Built b;
    b.input = head;
    for (size_t i = 0; i < order.size(); ++i) {
      if (i) b.input += "\n\n";
      b.input += "Document " + std::to_string(i + 1) + ":\n";
      if (order[i] >= 0) {
        b.offsets.push_back(static_cast<int64_t>(b.input.size()));
        b.needles.push_back((*gold)[static_cast<size_t>(order[i])]);
        b.depths.push_back(order.size() > 1 ? 100.0 * double(i) / double(order.size() - 1) : 0.0);
        b.input += (*gold)[static_cast<size_t>(order[i])];
      } else {
        b.input += *(*distract)[static_cast<size_t>(-order[i] - 1)];
      }
    }
    b.input += tail;
    return b;
  };
  in.exhausted_note = "qa example " + std::to_string(index) + ": all " + std::to_string(distract->size()) +
                      " distractor documents fit; the prompt is shorter than the budget";
  return in;
}

// ---- the generator ------------------------------------------------------------------

// Vocabulary for cwe: OneRuler's dictionary rule where the language has one,
// words of --haystack files, else the built-in English list (English only).
std::vector<std::string> cwe_vocabulary(const TaskOptions& opt, const LanguagePack& pack) {
  if (!opt.haystack_files.empty()) {
    LQ_CHECK(!pack.no_spaces, "cwe: words cannot be split from --haystack text in '{}' (no spaces); use "
             "--oneruler-data for its dictionary", pack.code);
    std::set<std::string> all;
    for (const auto& f : opt.haystack_files) {
      std::ifstream in(f, std::ios::binary);
      LQ_CHECK(in.good(), "cwe: cannot open '{}'", f);
      std::stringstream ss;
      ss << in.rdbuf();
      for (auto& w : words_from_text(ss.str())) all.insert(std::move(w));
    }
    return {all.begin(), all.end()};
  }
  if (!pack.dictionary_file.empty()) return load_oneruler_dictionary(pack.dictionary_file);
  LQ_CHECK(pack.code == "en",
           "cwe: language '{}' has no word list; pass --oneruler-data DIR (vocab/dictionaries) or --haystack FILE",
           pack.code);
  // English: the built-in list, plus (with OneRuler's data) the lower-case
  // ASCII words of 3..14 letters of the English books, standing in for the
  // `wonderwords` lists RULER and OneRuler use.
  std::set<std::string> all(builtin_english_words().begin(), builtin_english_words().end());
  for (const auto& f : pack.book_files) {
    std::ifstream in(f, std::ios::binary);
    LQ_CHECK(in.good(), "cwe: cannot open '{}'", f);
    std::stringstream ss;
    ss << in.rdbuf();
    for (auto& w : words_from_text(ss.str())) {
      bool ascii = w.size() >= 3 && w.size() <= 14 &&
                   std::all_of(w.begin(), w.end(), [](char c) { return c >= 'a' && c <= 'z'; });
      if (ascii) all.insert(std::move(w));
    }
  }
  return {all.begin(), all.end()};
}

}  // namespace

struct TaskGenerator::Impl {
  Impl(const TaskOptions& opt, const LanguageSet& langs, const PromptCounter& counter)
      : opt_(opt), counter_(counter), info_(find_task(opt.suite, opt.task)) {
    LQ_CHECK(static_cast<bool>(counter.count), "generate_examples: the prompt counter has no count function");
    LQ_CHECK(info_.implemented, "task {} has no generator in this build yet", info_.id());
    LQ_CHECK(opt.first_index >= 0, "first index ({}) must be >= 0", opt.first_index);
    LQ_CHECK(opt.length > 0, "length must be positive (got {})", opt.length);
    const std::string& s = opt.suite;
    LQ_CHECK(s == "oneruler" || opt.lang == "en", "{} tasks are English only (got --lang {})", s, opt.lang);
    pack_ = &langs.get(opt.lang);
    const std::string& t = opt.task;
    if (s == "nocha") {
      LQ_CHECK(!opt.data.empty(), "nocha/claims needs the NoCha data directory (--data DIR with claims.json, "
               "books.jsonl, {})", opt.nocha_prompt);
      nocha_ = std::make_unique<NochaData>(load_nocha_dir(opt.data, opt.nocha_prompt));
      kind_ = Kind::Nocha;
    } else if (s == "qa") {
      LQ_CHECK(!opt.data.empty(), "qa/qa needs a QA JSONL file (--data FILE; fields question, documents, answers)");
      qa_ = std::make_unique<std::vector<QaItem>>(load_qa_jsonl(opt.data));
      std::set<std::string> seen;
      for (const auto& it : *qa_)
        for (const auto& d : it.documents)
          if (seen.insert(d).second) qa_pool_.push_back(d);
      kind_ = Kind::Qa;
    } else if (t == "cwe" || t == "cwe_easy") {
      auto v = cwe_vocabulary(opt, *pack_);
      vocab_ = std::make_shared<const std::vector<std::string>>(std::move(v));
      vocab_set_ = std::make_shared<const std::set<std::string>>(vocab_->begin(), vocab_->end());
      kind_ = Kind::Cwe;
    } else if (t == "fwe") {
      kind_ = Kind::Fwe;
    } else {
      cfg_ = niah_config(s, t);
      if (t == "vt") {
        haystack_ = opt.haystack_files.empty()
                        ? std::make_unique<Haystack>(Haystack::from_units({kVtNoise}, "\n"))
                        : std::make_unique<Haystack>(Haystack::from_files(opt.haystack_files, "\n"));
        kind_ = Kind::Vt;
      } else {
        haystack_ = shared_haystack(opt, cfg_, *pack_);
        kind_ = Kind::Niah;
      }
      if (haystack_) shared_weights_ = std::make_shared<UnitWeights>(haystack_.get(), counter);
    }
  }

  int64_t available() const {
    if (kind_ == Kind::Nocha) return static_cast<int64_t>(nocha_->claims.size());
    if (kind_ == Kind::Qa) return static_cast<int64_t>(qa_->size());
    return -1;
  }

  // units < 0: fit to the budget.
  std::optional<Example> make(int64_t i, int64_t units, GenerateReport* rep) {
    const uint64_t es = example_seed(opt_.suite, opt_.task, opt_.length, opt_.lang, opt_.seed, i);
    Example e;
    e.index = i;
    e.suite = opt_.suite;
    e.task = opt_.task;
    e.lang = opt_.lang;
    e.length = opt_.length;
    e.gen_tokens = info_.gen_tokens;
    e.seed = opt_.seed;
    if (kind_ == Kind::Nocha) return make_nocha(std::move(e), units < 0, rep);
    TaskRng rng(es);
    Instance in;
    switch (kind_) {
      case Kind::Niah:
      case Kind::Vt: {
        std::shared_ptr<Plan> p =
            kind_ == Kind::Vt ? plan_ruler_vt(opt_, i, rng, haystack_.get())
            : opt_.suite == "ruler" ? plan_ruler_niah(opt_, cfg_, i, rng, haystack_.get(), es)
                                    : plan_oneruler_niah(opt_, cfg_, *pack_, i, rng, haystack_.get());
        auto uw = p->own_haystack ? std::make_shared<UnitWeights>(p->haystack, counter_) : shared_weights_;
        in = plan_instance(p, uw);
        break;
      }
      case Kind::Cwe:
        in = cwe_instance(opt_.suite, opt_.task, *pack_, opt_.length, vocab_, vocab_set_, rng, es);
        break;
      case Kind::Fwe:
        in = fwe_instance(opt_.length, rng, es);
        break;
      case Kind::Qa:
        LQ_CHECK(i < static_cast<int64_t>(qa_->size()), "qa: example {} requested but '{}' has {} examples", i,
                 opt_.data, qa_->size());
        in = qa_instance(*qa_, qa_pool_, i, counter_, rng, es);
        break;
      case Kind::Nocha:
        break;
    }
    Fit f;
    if (units < 0) {
      f = fit_instance(in, opt_.length, info_.gen_tokens, counter_);
      if (f.capped && rep && !in.exhausted_note.empty()) rep->notes.push_back(in.exhausted_note);
    } else {
      LQ_CHECK(units >= in.n_min && units <= in.n_max, "units {} outside {}..{}", units, in.n_min, in.n_max);
      f.n = units;
    }
    Built b = in.build(f.n);
    e.token_count = units < 0 ? f.tokens : counter_.count(b.input, in.answer_prefix);
    e.input = std::move(b.input);
    e.answer_prefix = in.answer_prefix;
    e.outputs = in.outputs;
    e.depths = b.needles.empty() ? in.depths : b.depths;
    e.needles = b.needles.empty() ? in.needles : b.needles;
    e.needle_offsets = b.offsets;
    e.queries = in.queries;
    e.haystack_units = f.n;
    e.meta = in.meta;
    return e;
  }

  enum class Kind { Niah, Vt, Cwe, Fwe, Qa, Nocha };

  std::optional<Example> make_nocha(Example e, bool fit, GenerateReport* rep) {
    LQ_CHECK(e.index < static_cast<int64_t>(nocha_->claims.size()), "nocha: claim {} requested but there are {}",
             e.index, nocha_->claims.size());
    const NochaClaim& c = nocha_->claims[static_cast<size_t>(e.index)];
    const std::string& book = nocha_->books.at(c.book_title);
    const int64_t budget = opt_.length - info_.gen_tokens;
    e.meta = {{"book_title", c.book_title}, {"pair_index", c.pair_index}, {"claim", c.claim}};
    e.outputs = {c.type ? "TRUE" : "FALSE"};
    auto skip = [&](int64_t tokens, bool estimate) -> std::optional<Example> {
      if (rep) {
        ++rep->skipped;
        if (!std::count(rep->skipped_books.begin(), rep->skipped_books.end(), c.book_title)) {
          rep->skipped_books.push_back(c.book_title);
          std::sort(rep->skipped_books.begin(), rep->skipped_books.end());
          rep->notes.push_back(fmt::format("nocha: book '{}' needs {}{} tokens + {} generation > length {}; its "
                                           "claims are skipped",
                                           c.book_title, estimate ? "at least about " : "", tokens,
                                           info_.gen_tokens, opt_.length));
        }
      }
      return std::nullopt;
    };
    if (fit) {
      // Cheap pre-check: the bare book's tokens. Template tokens only add to
      // it and merges across its two boundaries change at most a few, so a
      // book more than 64 tokens over budget cannot fit.
      auto it = book_tokens_.find(c.book_title);
      if (it == book_tokens_.end()) {
        int64_t bt = counter_.count_piece ? counter_.count_piece(book) : int64_t(book.size() / 4);
        it = book_tokens_.emplace(c.book_title, bt).first;
      }
      if (counter_.count_piece && it->second > budget + 64) return skip(it->second, true);
    }
    e.input = nocha_render_prompt(nocha_->prompt, book, c.claim);
    e.token_count = counter_.count(e.input, "");
    if (fit && e.token_count > budget) return skip(e.token_count, false);
    return e;
  }

  const TaskOptions& opt_;
  const PromptCounter& counter_;
  const TaskInfo& info_;
  const LanguagePack* pack_ = nullptr;
  Kind kind_ = Kind::Niah;
  NiahConfig cfg_;
  std::unique_ptr<Haystack> haystack_;
  std::shared_ptr<UnitWeights> shared_weights_;
  std::shared_ptr<const std::vector<std::string>> vocab_;
  std::shared_ptr<const std::set<std::string>> vocab_set_;
  std::unique_ptr<NochaData> nocha_;
  std::map<std::string, int64_t> book_tokens_;
  std::unique_ptr<std::vector<QaItem>> qa_;
  std::vector<std::string> qa_pool_;
};

TaskGenerator::TaskGenerator(const TaskOptions& opt, const LanguageSet& langs, const PromptCounter& counter)
    : impl_(std::make_unique<Impl>(opt, langs, counter)) {}
TaskGenerator::~TaskGenerator() = default;
int64_t TaskGenerator::available() const { return impl_->available(); }
std::optional<Example> TaskGenerator::fitted(int64_t index, GenerateReport* report) {
  LQ_CHECK(index >= 0, "example index must be >= 0 (got {})", index);
  return impl_->make(index, -1, report);
}
Example TaskGenerator::at_units(int64_t index, int64_t units) {
  LQ_CHECK(index >= 0, "example index must be >= 0 (got {})", index);
  LQ_CHECK(units >= 0, "units must be >= 0 (got {})", units);
  return *impl_->make(index, units, nullptr);
}

std::vector<Example> generate_examples(const TaskOptions& opt, const LanguageSet& langs,
                                       const PromptCounter& counter, GenerateReport* report) {
  TaskGenerator g(opt, langs, counter);
  int64_t n = opt.n;
  const int64_t avail = g.available();
  if (avail >= 0) {
    LQ_CHECK(opt.first_index <= avail, "{}/{}: first index {} but the data has {} examples", opt.suite, opt.task,
             opt.first_index, avail);
    if (n < 0 || opt.first_index + n > avail) n = avail - opt.first_index;
  }
  LQ_CHECK(n >= 0, "n must be >= 0 (got {}; n < 0 means 'all' only for nocha and qa)", opt.n);
  std::vector<Example> out;
  for (int64_t i = opt.first_index; i < opt.first_index + n; ++i) {
    auto e = g.fitted(i, report);
    if (e) out.push_back(std::move(*e));
    if (opt.progress) opt.progress(i - opt.first_index + 1, n);
  }
  if (report) report->generated += static_cast<int64_t>(out.size());
  return out;
}

Example generate_example_at(const TaskOptions& opt, const LanguageSet& langs, const PromptCounter& counter,
                            int64_t index, int64_t units) {
  TaskGenerator g(opt, langs, counter);
  return g.at_units(index, units);
}

PromptCounter chat_prompt_counter(const Tokenizer& tok, ChatFormat fmt) {
  PromptCounter c;
  c.count = [&tok, fmt](const std::string& m, const std::string& a) {
    return static_cast<int64_t>(tok.encode(render_chat(fmt, {{"user", m}}, true) + a, false).size());
  };
  c.count_piece = [&tok](const std::string& t) { return static_cast<int64_t>(tok.encode(t, false).size()); };
  return c;
}

// ---- JSONL ------------------------------------------------------------------

namespace {
const char* const kExampleKeys[] = {"index",   "suite",         "task",    "lang",           "length",
                                    "token_count", "gen_tokens", "input",  "answer_prefix",  "outputs",
                                    "depths",  "needle_offsets", "needles", "queries",       "haystack_units",
                                    "seed"};
}  // namespace

nlohmann::json example_to_json(const Example& e) {
  nlohmann::json j = {{"index", e.index},       {"suite", e.suite},
                      {"task", e.task},         {"lang", e.lang},
                      {"length", e.length},     {"token_count", e.token_count},
                      {"gen_tokens", e.gen_tokens}, {"input", e.input},
                      {"answer_prefix", e.answer_prefix}, {"outputs", e.outputs},
                      {"depths", e.depths},     {"needle_offsets", e.needle_offsets},
                      {"needles", e.needles},   {"queries", e.queries},
                      {"haystack_units", e.haystack_units}, {"seed", e.seed}};
  if (e.meta.is_object())
    for (auto it = e.meta.begin(); it != e.meta.end(); ++it)
      if (!j.contains(it.key())) j[it.key()] = it.value();
  return j;
}

namespace {
template <typename T>
void get_opt(const nlohmann::json& j, const char* key, T& dst, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return;
  try {
    dst = j[key].get<T>();
  } catch (const nlohmann::json::exception& ex) {
    fail("{}: field \"{}\" has the wrong type: {}", where, key, ex.what());
  }
}
}  // namespace

Example example_from_json(const nlohmann::json& j, const std::string& where) {
  LQ_CHECK(j.is_object(), "{}: not a JSON object", where);
  LQ_CHECK(j.contains("input") && j["input"].is_string(), "{}: missing string field \"input\"", where);
  LQ_CHECK(j.contains("outputs") && j["outputs"].is_array(), "{}: missing array field \"outputs\"", where);
  Example e;
  get_opt(j, "index", e.index, where);
  get_opt(j, "suite", e.suite, where);
  get_opt(j, "task", e.task, where);
  get_opt(j, "lang", e.lang, where);
  get_opt(j, "length", e.length, where);
  get_opt(j, "token_count", e.token_count, where);
  get_opt(j, "gen_tokens", e.gen_tokens, where);
  get_opt(j, "input", e.input, where);
  get_opt(j, "answer_prefix", e.answer_prefix, where);
  get_opt(j, "outputs", e.outputs, where);
  get_opt(j, "depths", e.depths, where);
  get_opt(j, "needle_offsets", e.needle_offsets, where);
  get_opt(j, "needles", e.needles, where);
  get_opt(j, "queries", e.queries, where);
  get_opt(j, "haystack_units", e.haystack_units, where);
  get_opt(j, "seed", e.seed, where);
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::find_if(std::begin(kExampleKeys), std::end(kExampleKeys),
                     [&](const char* k) { return it.key() == k; }) == std::end(kExampleKeys))
      e.meta[it.key()] = it.value();
  return e;
}

void write_examples_jsonl(const std::string& path, const std::vector<Example>& examples) {
  std::ofstream f(path, std::ios::binary);
  LQ_CHECK(f.good(), "cannot write '{}'", path);
  for (const auto& e : examples)
    f << example_to_json(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  LQ_CHECK(f.good(), "error writing '{}'", path);
}

namespace {
template <typename Fn>
void for_each_jsonl(const std::string& path, Fn fn) {
  std::ifstream f(path, std::ios::binary);
  LQ_CHECK(f.good(), "cannot open '{}'", path);
  std::string line;
  int64_t lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& ex) {
      fail("{}:{}: invalid JSON: {}", path, lineno, ex.what());
    }
    fn(j, path + ":" + std::to_string(lineno));
  }
}
}  // namespace

std::vector<Example> read_examples_jsonl(const std::string& path) {
  std::vector<Example> out;
  for_each_jsonl(path, [&](const nlohmann::json& j, const std::string& where) { out.push_back(example_from_json(j, where)); });
  return out;
}

// ---- scoring ----------------------------------------------------------------

double score_case(const std::string& task_id, const std::string& lang, const std::vector<std::string>& gold,
                  const std::string& pred) {
  return score_with(find_task(task_id).scorer, lang, gold, pred);
}

nlohmann::json FileScore::to_json() const {
  nlohmann::json j = {{"score", mean}, {"n", scored}, {"skipped", skipped}};
  if (nocha) {
    j["score"] = nocha->pair_accuracy();
    j["claim_accuracy"] = nocha->claims ? double(nocha->claims_correct) / double(nocha->claims) : 0.0;
    j["pairs"] = nocha->pairs;
    j["pairs_correct"] = nocha->pairs_correct;
    j["incomplete_pairs"] = nocha->incomplete_pairs;
  }
  return j;
}

FileScore score_predictions_jsonl(const std::string& path, const std::string& default_task_id,
                                  const std::string& default_lang) {
  FileScore fs;
  std::set<int64_t> seen;
  std::vector<NochaClaimResult> nocha_results;
  for_each_jsonl(path, [&](const nlohmann::json& j, const std::string& where) {
    LQ_CHECK(j.is_object() && j.contains("outputs") && j["outputs"].is_array(),
             "{}: missing array field \"outputs\"", where);
    const nlohmann::json* pred = nullptr;
    for (const char* k : {"pred", "prediction", "output"})
      if (j.contains(k)) {
        pred = &j[k];
        break;
      }
    if (!pred) {
      for (auto it = j.begin(); it != j.end(); ++it)
        if (it.key().rfind("response-", 0) == 0) {
          LQ_CHECK(!pred, "{}: more than one \"response-*\" field", where);
          pred = &it.value();
        }
    }
    LQ_CHECK(pred, "{}: no prediction field (pred, prediction, output or response-*)", where);
    if (j.contains("index") && j["index"].is_number_integer()) {
      if (!seen.insert(j["index"].get<int64_t>()).second) {
        ++fs.skipped;
        return;
      }
    }
    if (pred->is_null()) {
      ++fs.skipped;
      return;
    }
    LQ_CHECK(pred->is_string(), "{}: the prediction is not a string", where);
    std::string task_id = default_task_id;
    if (j.contains("suite") && j.contains("task") && j["suite"].is_string() && j["task"].is_string())
      task_id = j["suite"].get<std::string>() + "/" + j["task"].get<std::string>();
    LQ_CHECK(!task_id.empty(), "{}: no suite/task in the line and no --task given", where);
    std::string lang = j.contains("lang") && j["lang"].is_string() ? j["lang"].get<std::string>() : default_lang;
    std::vector<std::string> gold;
    for (const auto& g : j["outputs"]) {
      LQ_CHECK(g.is_string(), "{}: \"outputs\" must hold strings", where);
      gold.push_back(g.get<std::string>());
    }
    const double sc = score_case(task_id, lang, gold, pred->get<std::string>());
    fs.scores.push_back(sc);
    ++fs.scored;
    if (find_task(task_id).scorer == "nocha_claim") {
      LQ_CHECK(j.contains("book_title") && j["book_title"].is_string() && j.contains("pair_index") &&
                   j["pair_index"].is_number_integer(),
               "{}: NoCha lines need \"book_title\" and integer \"pair_index\" to form pairs", where);
      NochaClaimResult r;
      r.book_title = j["book_title"].get<std::string>();
      r.pair_index = j["pair_index"].get<int64_t>();
      // score_case has checked that gold is one "TRUE"/"FALSE" (any case).
      r.gold = gold[0].size() == 4;
      r.predicted = nocha_parse_verdict(pred->get<std::string>());
      nocha_results.push_back(std::move(r));
    }
  });
  if (!nocha_results.empty()) fs.nocha = nocha_pair_accuracy(nocha_results);
  double sum = 0;
  for (double s : fs.scores) sum += s;
  fs.mean = fs.scored ? sum / double(fs.scored) : 0.0;
  return fs;
}

}  // namespace lq
