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
      {"ruler", "vt", "variable tracking (1 chain, 4 hops)", 30,
       " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
       "assgined the value {query}, they are: ",
       "string_match_all", false},
      {"ruler", "cwe", "common words extraction (freq 30 vs 3, 10 words)", 120,
       " Answer: The top 10 words that appear most often in the list are:", "string_match_all", false},
      {"ruler", "fwe", "frequent words extraction (Zipf alpha 2)", 50,
       " Answer: According to the coded text above, the three most frequently appeared words are:",
       "string_match_all", false},
      {"oneruler", "niah_single", "NIAH, book haystack, noun -> 7-digit number", 30, "", "oneruler_niah", true},
      {"oneruler", "niah_multikey", "NIAH, 4 keys (3 distractors)", 30, "", "oneruler_niah", true},
      {"oneruler", "niah_multivalue", "NIAH, one key with 4 values", 30, "", "oneruler_niah", true},
      {"oneruler", "niah_multiquery", "NIAH, 2 keys both asked", 30, "", "oneruler_niah", true},
      {"oneruler", "niah_none", "NIAH, 4 needles, asked key absent: answer is the none word", 30, "",
       "oneruler_none", true},
      {"oneruler", "cwe_easy", "common words extraction (freq 30 vs 3)", 50, "", "oneruler_cwe", false},
      {"oneruler", "cwe", "common words extraction (freq 20 vs 10)", 50, "", "oneruler_cwe", false},
      {"nocha", "claims", "NoCha claim verification over whole books, pair accuracy", 800, "", "nocha_claim",
       false},
      {"qa", "qa", "QA from user JSONL with distractor documents", 32, " Answer:", "qa_f1", false},
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
  if (t.suite == "oneruler") return langs.codes();
  return {"en"};
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

// One example before fitting: everything except the number of haystack units.
struct Plan {
  std::string head, tail;             // user message = head + context + tail
  std::string answer_prefix;
  std::vector<std::string> needles;   // in text order
  std::vector<double> depths;         // parallel to needles, ascending
  std::vector<std::string> outputs, queries;
  const Haystack* haystack = nullptr;
  std::unique_ptr<Haystack> own_haystack;  // per-example haystacks (distractor needles)
};

struct Built {
  std::string input;
  std::vector<int64_t> offsets;
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
  auto put = [&](const std::string& piece) {
    if (!first) s += j;
    first = false;
    s += piece;
  };
  for (int64_t u = 0; u <= n; ++u) {
    while (k < p.needles.size() && pos[k] == u) {
      if (!first) s += j;
      first = false;
      b.offsets.push_back(static_cast<int64_t>(s.size()));
      s += p.needles[k++];
    }
    if (u < n) put(h.unit(u));
  }
  s += p.tail;
  return b;
}

struct Fit {
  int64_t n = 0;
  int64_t tokens = 0;  // exact prompt count at n
};

// Largest n with count(n) + gen <= length, bracketed binary search started
// from an interpolation estimate. `weights` caches per-unit estimates.
Fit fit_units(const Plan& p, int64_t length, int64_t gen, const PromptCounter& counter,
              std::vector<double>& weights) {
  const Haystack& h = *p.haystack;
  const int64_t budget = length - gen;
  LQ_CHECK(budget > 0, "length {} is not larger than the generation budget {}", length, gen);
  auto exact = [&](int64_t n) { return counter.count(build_input(p, n).input, p.answer_prefix); };
  auto weight = [&](int64_t i) -> double {
    const bool cyclic = !h.generated();
    size_t key = cyclic ? static_cast<size_t>(i) % h.cycle() : static_cast<size_t>(i);
    if (!cyclic) return counter.count_piece ? double(counter.count_piece(h.joiner() + h.unit(i)))
                                            : double(h.joiner().size() + h.unit(i).size());
    while (weights.size() <= key) {
      int64_t u = static_cast<int64_t>(weights.size());
      weights.push_back(counter.count_piece ? double(counter.count_piece(h.joiner() + h.unit(u)))
                                            : double(h.joiner().size() + h.unit(u).size()));
    }
    return weights[key];
  };
  const int64_t c0 = exact(0);
  LQ_CHECK(c0 <= budget,
           "length {}: the prompt without haystack already needs {} tokens + {} generation tokens", length, c0, gen);
  std::vector<double> W{0.0};  // prefix sums of weights, extended lazily
  auto Wn = [&](int64_t n) {
    while (static_cast<int64_t>(W.size()) <= n) W.push_back(W.back() + std::max(weight(int64_t(W.size()) - 1), 0.0));
    return W[static_cast<size_t>(n)];
  };
  double r = counter.count_piece ? 1.0 : 0.3;  // tokens per weight unit, recalibrated
  int64_t lo = 0, hi = -1, clo = c0;
  for (int iter = 0; hi < 0 || hi - lo > 1; ++iter) {
    LQ_CHECK(iter < 200, "internal: budget search did not converge (length {})", length);
    int64_t probe;
    if (iter < 4) {
      // Interpolate: largest n with c0 + r * W(n) <= budget.
      int64_t n = lo;
      while (c0 + r * Wn(n + 1) <= double(budget) && (hi < 0 || n + 1 < hi)) ++n;
      probe = n;
    } else {
      probe = hi < 0 ? std::max<int64_t>(lo * 2, lo + 1) : lo + (hi - lo) / 2;
    }
    if (probe <= lo) probe = lo + 1;
    if (hi >= 0 && probe >= hi) probe = hi - 1;
    if (probe <= lo) break;
    int64_t c = exact(probe);
    if (c <= budget) {
      lo = probe;
      clo = c;
    } else {
      hi = probe;
    }
    double w = Wn(probe);
    if (w > 0 && c > c0) r = std::max(1e-3, double(c - c0) / w);
  }
  return {lo, clo};
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

// The shared (per generate call) haystack for a task.
std::unique_ptr<Haystack> shared_haystack(const GenerateOptions& opt, const NiahConfig& c, const LanguagePack& pack) {
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

Plan plan_ruler_niah(const GenerateOptions& opt, const NiahConfig& c, int64_t index, TaskRng& rng,
                     const Haystack* shared, uint64_t ex_seed) {
  Plan p;
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
    p.own_haystack = std::make_unique<Haystack>(Haystack::from_generator(
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
  return p;
}

Plan plan_oneruler_niah(const GenerateOptions& opt, const NiahConfig& c, const LanguagePack& pack, int64_t index,
                        TaskRng& rng, const Haystack* shared) {
  Plan p;
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
  return p;
}

}  // namespace

std::vector<Example> generate_examples(const GenerateOptions& opt, const LanguageSet& langs,
                                       const PromptCounter& counter) {
  LQ_CHECK(static_cast<bool>(counter.count), "generate_examples: the prompt counter has no count function");
  const TaskInfo& info = find_task(opt.suite, opt.task);
  LQ_CHECK(info.implemented, "task {} has no generator in this build yet", info.id());
  LQ_CHECK(opt.n >= 0 && opt.first_index >= 0, "n ({}) and first index ({}) must be >= 0", opt.n, opt.first_index);
  const bool ruler = opt.suite == "ruler";
  LQ_CHECK(!ruler || opt.lang == "en", "RULER tasks are English only (got --lang {})", opt.lang);
  const LanguagePack& pack = langs.get(opt.lang);
  NiahConfig cfg = niah_config(opt.suite, opt.task);
  std::unique_ptr<Haystack> shared = shared_haystack(opt, cfg, pack);
  std::vector<double> weights;  // per-unit estimates of the shared cyclic haystack
  std::vector<Example> out;
  for (int64_t i = opt.first_index; i < opt.first_index + opt.n; ++i) {
    uint64_t es = example_seed(opt.suite, opt.task, opt.length, opt.lang, opt.seed, i);
    TaskRng rng(es);
    Plan p = ruler ? plan_ruler_niah(opt, cfg, i, rng, shared.get(), es)
                   : plan_oneruler_niah(opt, cfg, pack, i, rng, shared.get());
    std::vector<double> local_weights;
    Fit f = fit_units(p, opt.length, info.gen_tokens, counter, shared ? weights : local_weights);
    Built b = build_input(p, f.n);
    Example e;
    e.index = i;
    e.suite = opt.suite;
    e.task = opt.task;
    e.lang = opt.lang;
    e.length = opt.length;
    e.token_count = f.tokens;
    e.gen_tokens = info.gen_tokens;
    e.input = std::move(b.input);
    e.answer_prefix = p.answer_prefix;
    e.outputs = p.outputs;
    e.depths = p.depths;
    e.needle_offsets = b.offsets;
    e.needles = p.needles;
    e.queries = p.queries;
    e.haystack_units = f.n;
    e.seed = opt.seed;
    out.push_back(std::move(e));
  }
  return out;
}

// ---- JSONL ------------------------------------------------------------------

nlohmann::json example_to_json(const Example& e) {
  return {{"index", e.index},       {"suite", e.suite},
          {"task", e.task},         {"lang", e.lang},
          {"length", e.length},     {"token_count", e.token_count},
          {"gen_tokens", e.gen_tokens}, {"input", e.input},
          {"answer_prefix", e.answer_prefix}, {"outputs", e.outputs},
          {"depths", e.depths},     {"needle_offsets", e.needle_offsets},
          {"needles", e.needles},   {"queries", e.queries},
          {"haystack_units", e.haystack_units}, {"seed", e.seed}};
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

nlohmann::json FileScore::to_json() const { return {{"score", mean}, {"n", scored}, {"skipped", skipped}}; }

FileScore score_predictions_jsonl(const std::string& path, const std::string& default_task_id,
                                  const std::string& default_lang) {
  FileScore fs;
  std::set<int64_t> seen;
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
    fs.scores.push_back(score_case(task_id, lang, gold, pred->get<std::string>()));
    ++fs.scored;
  });
  double sum = 0;
  for (double s : fs.scores) sum += s;
  fs.mean = fs.scored ? sum / double(fs.scored) : 0.0;
  return fs;
}

}  // namespace lq
