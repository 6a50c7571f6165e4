// eval/runner.cc: the evaluation grid, one variant at a time, resumable.
//
// Native variants run their examples on this thread (the engine's OpenMP pool
// belongs to it). Endpoint variants (backends/openai.h) keep up to
// `concurrency` requests in flight: this thread generates the examples in
// order and queues at most `concurrency` of them; worker threads send them and
// commit each result under one mutex on the single database connection, so
// every result is committed exactly once, whatever order they finish in.
#include "eval/runner.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "backends/backend.h"
#include "backends/openai.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/threads.h"
#include "eval/results_db.h"
#include "eval/tasks.h"

namespace lq {

using json = nlohmann::json;

VariantSpec VariantSpec::parse(const std::string& s) {
  VariantSpec v;
  const auto eq = s.find('=');
  LQ_CHECK(eq != std::string::npos && eq > 0,
           "--variant '{}': expected NAME=SOURCE[,method=M][,key=value...]", s);
  v.name = s.substr(0, eq);
  for (char c : v.name)
    LQ_CHECK(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.',
             "--variant '{}': the name may only hold letters, digits, '-', '_' and '.'", s);
  std::string rest = s.substr(eq + 1);
  size_t pos = 0;
  bool first = true;
  while (pos <= rest.size()) {
    size_t comma = rest.find(',', pos);
    if (comma == std::string::npos) comma = rest.size();
    const std::string item = rest.substr(pos, comma - pos);
    if (first) {
      LQ_CHECK(!item.empty(), "--variant '{}': SOURCE is empty", s);
      v.source = item;
      first = false;
    } else if (!item.empty()) {
      const auto e = item.find('=');
      LQ_CHECK(e != std::string::npos && e > 0, "--variant '{}': '{}' is not key=value", s, item);
      const std::string k = item.substr(0, e), val = item.substr(e + 1);
      if (k == "method") v.method = val;
      else v.settings[k] = val;
    }
    pos = comma + 1;
  }
  if (v.method == "bf16" || v.method == "none") v.method.clear();
  if (v.source.find('|') != std::string::npos) {
    // URL1|URL2|...: every piece must be an endpoint.
    size_t p = 0;
    while (p <= v.source.size()) {
      size_t bar = v.source.find('|', p);
      if (bar == std::string::npos) bar = v.source.size();
      const std::string u = v.source.substr(p, bar - p);
      LQ_CHECK(u.rfind("http://", 0) == 0 || u.rfind("https://", 0) == 0,
               "--variant '{}': '{}' is not an http(s):// URL (several sources joined by '|' are endpoints serving "
               "the same model)", s, u);
      p = bar + 1;
    }
  }
  return v;
}

bool VariantSpec::is_endpoint() const { return source.rfind("http://", 0) == 0 || source.rfind("https://", 0) == 0; }

std::vector<std::string> VariantSpec::endpoint_urls() const {
  std::vector<std::string> out;
  if (!is_endpoint()) return out;
  size_t p = 0;
  while (p <= source.size()) {
    size_t bar = source.find('|', p);
    if (bar == std::string::npos) bar = source.size();
    out.push_back(source.substr(p, bar - p));
    p = bar + 1;
  }
  return out;
}

std::string VariantSpec::to_string() const {
  std::string s = name + "=" + source;
  if (!method.empty()) s += ",method=" + method;
  for (auto& [k, val] : settings) s += "," + k + "=" + val;
  return s;
}

json EvalSummary::to_json() const {
  return {{"evaluated", done}, {"skipped_done", skipped}, {"failed", failed}, {"baseline", baseline}};
}

std::string file_checksum(const std::string& path) {
  if (!file_exists(path)) return "";
  return fmt::format("{:016x}", fnv1a64(read_file(path)));
}

std::string quantized_cache_dir(const EvalOptions& o, const VariantSpec& v) {
  std::error_code ec;
  const std::string abs = std::filesystem::absolute(v.source, ec).lexically_normal().string();
  std::string key = abs + "|" + file_checksum(v.source + "/config.json") + "|" + v.method;
  for (auto& [k, val] : v.settings) key += "|" + k + "=" + val;
  const uint64_t h = fnv1a64(key);
  std::string base = std::filesystem::path(abs).filename().string();
  if (base.empty()) base = "model";
  return fmt::format("{}/{}-{}-{:012x}", o.cache_dir, base, v.method, h & 0xffffffffffffull);
}

namespace {

bool is_http(const std::string& s) { return s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0; }

std::vector<std::string> json_strings(const json& j, const std::string& file, const std::string& field) {
  LQ_CHECK(j.is_array(), "{}: field '{}' must be an array", file, field);
  std::vector<std::string> out;
  for (auto& x : j) {
    if (x.is_string()) out.push_back(x.get<std::string>());
    else if (x.is_number_integer()) out.push_back(std::to_string(x.get<int64_t>()));
    else fail("{}: field '{}' holds {}, expected strings", file, field, x.dump());
  }
  return out;
}

// Model directory for a variant: the source, or its quantized copy (made once, cached).
// What a model directory used as it is holds, for the variant's "method" column:
// "as-is" for an unquantized checkpoint, "as-is:<method>" for a quantized one
// (longquant's own method name when it wrote the checkpoint, else the
// quant_method of the config with its bits, e.g. "as-is:gptq-4bit").
std::string checkpoint_method(const std::string& dir) {
  std::ifstream f(dir + "/config.json");
  if (!f) return "as-is";
  json c = json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (!c.is_object() || !c.contains("quantization_config") || !c["quantization_config"].is_object())
    return "as-is";
  const json& q = c["quantization_config"];
  if (q.contains("longquant") && q["longquant"].is_object() && q["longquant"].contains("method") &&
      q["longquant"]["method"].is_string())
    return "as-is:" + q["longquant"]["method"].get<std::string>();
  std::string m = q.value("quant_method", std::string("quantized"));
  if (q.contains("bits") && q["bits"].is_number_integer()) m += "-" + std::to_string(q["bits"].get<int>()) + "bit";
  if (q.value("load_in_4bit", false)) m += "-" + q.value("bnb_4bit_quant_type", std::string("4bit"));
  return "as-is:" + m;
}

std::string resolve_model_dir(const EvalOptions& o, const VariantSpec& v) {
  if (v.method.empty()) {
    LQ_CHECK(file_exists(v.source + "/config.json"), "variant '{}': {} is not a model directory (no config.json)",
             v.name, v.source);
    return v.source;
  }
  LQ_CHECK(!is_http(v.source), "variant '{}': method= quantizes a local BF16 directory, not an endpoint", v.name);
  LQ_CHECK(file_exists(v.source + "/config.json"), "variant '{}': {} is not a model directory (no config.json)",
           v.name, v.source);
  const std::string dir = quantized_cache_dir(o, v);
  if (file_exists(dir + "/config.json")) return dir;
  LQ_CHECK(bool(o.quantize), "variant '{}': method '{}' is not available in this build", v.name, v.method);
  std::error_code ec;
  std::filesystem::create_directories(o.cache_dir, ec);
  LQ_CHECK(!ec, "cannot create the quantization cache {}: {}", o.cache_dir, ec.message());
  const std::string tmp = dir + ".partial";
  std::filesystem::remove_all(tmp, ec);
  if (!o.quiet) std::fprintf(stderr, "variant %s: quantizing %s with %s into %s\n", v.name.c_str(), v.source.c_str(),
                             v.method.c_str(), dir.c_str());
  o.quantize(v.source, v.method, v.settings, tmp);
  std::filesystem::rename(tmp, dir, ec);
  LQ_CHECK(!ec, "cannot move {} to {}: {}", tmp, dir, ec.message());
  return dir;
}

}  // namespace

json parse_study_toml(const std::string& text, const std::string& path) {
  // The subset of TOML a study file needs: `key = value` pairs at top level, values
  // being "strings", 'literal strings', integers, true/false, or [arrays] of those
  // (arrays may span lines); # comments. Anything else is an error with its line.
  json j = json::object();
  size_t i = 0, line = 1;
  auto err = [&](const std::string& what) -> void { fail("{}:{}: {}", path, line, what); };
  auto skip_ws = [&](bool newlines) {
    while (i < text.size()) {
      const char c = text[i];
      if (c == ' ' || c == '\t' || c == '\r') ++i;
      else if (c == '#') { while (i < text.size() && text[i] != '\n') ++i; }
      else if (c == '\n' && newlines) { ++i; ++line; }
      else break;
    }
  };
  std::function<json()> value = [&]() -> json {
    skip_ws(false);
    if (i >= text.size()) err("missing value");
    const char c = text[i];
    if (c == '"' || c == '\'') {
      const char q = c;
      std::string s;
      ++i;
      while (i < text.size() && text[i] != q) {
        if (text[i] == '\n') err("unterminated string");
        if (q == '"' && text[i] == '\\' && i + 1 < text.size()) {
          const char e = text[++i];
          s += e == 'n' ? '\n' : e == 't' ? '\t' : e;
          ++i;
          continue;
        }
        s += text[i++];
      }
      if (i >= text.size()) err("unterminated string");
      ++i;
      return s;
    }
    if (c == '[') {
      ++i;
      json a = json::array();
      for (;;) {
        skip_ws(true);
        if (i < text.size() && text[i] == ']') { ++i; return a; }
        a.push_back(value());
        skip_ws(true);
        if (i < text.size() && text[i] == ',') { ++i; continue; }
        if (i < text.size() && text[i] == ']') { ++i; return a; }
        err("expected ',' or ']' in an array");
      }
    }
    std::string tok;
    while (i < text.size() && (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '_' ||
                               text[i] == '-' || text[i] == '+' || text[i] == '.'))
      tok += text[i++];
    if (tok == "true") return true;
    if (tok == "false") return false;
    std::string digits;
    for (char d : tok) if (d != '_') digits += d;
    try {
      size_t used = 0;
      const long long v = std::stoll(digits, &used);
      if (used == digits.size() && !digits.empty()) return v;
    } catch (...) {
    }
    err("unsupported value '" + tok + "' (strings, integers, booleans and arrays are supported)");
    return nullptr;
  };
  for (;;) {
    skip_ws(true);
    if (i >= text.size()) break;
    if (text[i] == '[') err("tables are not supported in a study file: use top-level keys");
    std::string key;
    while (i < text.size() && (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '_' || text[i] == '-'))
      key += text[i++];
    if (key.empty()) err("expected a key");
    skip_ws(false);
    if (i >= text.size() || text[i] != '=') err("expected '=' after '" + key + "'");
    ++i;
    if (j.contains(key)) err("key '" + key + "' given twice");
    j[key] = value();
    skip_ws(false);
    if (i < text.size() && text[i] != '\n') err("unexpected text after the value of '" + key + "'");
  }
  return j;
}

void load_study_file(const std::string& path, EvalOptions* o, bool has_variants, bool has_tasks, bool has_lengths,
                     bool has_langs) {
  const std::string text = read_file(path);
  json j;
  const bool toml = path.size() >= 5 && path.compare(path.size() - 5, 5, ".toml") == 0;
  if (toml) {
    j = parse_study_toml(text, path);
  } else {
    try {
      j = json::parse(text);
    } catch (const json::parse_error& e) {
      fail("{}: invalid JSON: {}", path, e.what());
    }
  }
  LQ_CHECK(j.is_object(), "{}: a study file is a JSON object", path);
  static const std::set<std::string> known{"variants", "tasks", "lengths", "langs", "n", "seed", "baseline",
                                           "oneruler_data", "precision", "chat_format", "chat_api",
                                           "description"};
  for (auto& [k, val] : j.items()) LQ_CHECK(known.count(k), "{}: unknown field '{}'", path, k);
  if (j.contains("variants") && !has_variants)
    for (auto& s : json_strings(j["variants"], path, "variants")) o->variants.push_back(VariantSpec::parse(s));
  if (j.contains("tasks") && !has_tasks) o->tasks = json_strings(j["tasks"], path, "tasks");
  if (j.contains("lengths") && !has_lengths)
    for (auto& s : json_strings(j["lengths"], path, "lengths")) o->lengths.push_back(parse_length(s));
  if (j.contains("langs") && !has_langs) o->langs = json_strings(j["langs"], path, "langs");
  try {
    if (j.contains("n")) o->n = j["n"].get<int64_t>();
    if (j.contains("seed")) o->seed = j["seed"].get<uint64_t>();
    if (j.contains("baseline") && o->baseline.empty()) o->baseline = j["baseline"].get<std::string>();
    if (j.contains("oneruler_data") && o->oneruler_data.empty()) o->oneruler_data = j["oneruler_data"].get<std::string>();
    if (j.contains("precision")) o->precision = parse_precision(j["precision"].get<std::string>());
    if (j.contains("chat_format")) o->chat_format = j["chat_format"].get<std::string>();
    if (j.contains("chat_api")) o->chat_api = o->chat_api || j["chat_api"].get<bool>();
  } catch (const json::exception& e) {
    fail("{}: {}", path, e.what());
  }
}

EvalSummary run_eval(const EvalOptions& o) {
  LQ_CHECK(!o.variants.empty(), "eval: no --variant given");
  LQ_CHECK(!o.tasks.empty(), "eval: no --tasks given");
  LQ_CHECK(!o.lengths.empty(), "eval: no --lengths given");
  LQ_CHECK(o.n >= 1, "eval: --n must be >= 1");
  LQ_CHECK(!o.db_path.empty(), "eval: --db is required");
  std::set<std::string> names;
  for (auto& v : o.variants) LQ_CHECK(names.insert(v.name).second, "eval: variant name '{}' given twice", v.name);
  for (auto& t : o.tasks) {
    const TaskInfo& ti = find_task(t);  // throws listing the known tasks
    LQ_CHECK(ti.implemented, "eval: task {} has no generator in this build", t);
  }
  for (auto L : o.lengths) LQ_CHECK(L >= 64, "eval: length {} is too small", L);

  LanguageSet langs = LanguageSet::builtin();
  if (!o.oneruler_data.empty()) langs.load_oneruler_dir(o.oneruler_data);
  std::vector<std::string> want_langs = o.langs.empty() ? std::vector<std::string>{"en"} : o.langs;
  for (auto& l : want_langs) LQ_CHECK(langs.has(l), "eval: unknown language '{}' (use --oneruler-data for more)", l);

  // Cells: (task, length, lang) where the task supports the language.
  struct Cell { std::string task_id, suite, task; int64_t length; std::string lang; };
  std::vector<Cell> cells;
  for (auto& t : o.tasks) {
    const TaskInfo& ti = find_task(t);
    auto tl = task_languages(ti, langs);
    for (auto L : o.lengths)
      for (auto& l : want_langs)
        if (std::find(tl.begin(), tl.end(), l) != tl.end()) cells.push_back({ti.id(), ti.suite, ti.name, L, l});
  }
  LQ_CHECK(!cells.empty(), "eval: no (task, language) combination applies: RULER tasks are English only");

  auto db = ResultsDb::open(o.db_path);
  EvalSummary sum;
  sum.baseline = o.baseline;
  if (sum.baseline.empty()) sum.baseline = names.count("bf16") ? "bf16" : o.variants[0].name;
  LQ_CHECK(names.count(sum.baseline), "eval: --baseline '{}' is not one of the variants", sum.baseline);

  // Register every variant first: a conflicting redefinition fails before any work.
  // Endpoint settings are parsed (and checked) here too.
  std::vector<std::optional<EndpointOptions>> endpoints(o.variants.size());
  for (size_t vi = 0; vi < o.variants.size(); ++vi) {
    const VariantSpec& v = o.variants[vi];
    VariantDef d;
    d.name = v.name;
    if (v.is_endpoint()) {
      LQ_CHECK(v.method.empty(), "variant '{}': method= quantizes a local BF16 directory, not an endpoint", v.name);
      endpoints[vi] = EndpointOptions::from_variant(v.name, v.source, v.settings, o.chat_api, o.chat_format);
      const EndpointOptions& e = *endpoints[vi];
      // Identity only (what is evaluated), so URLs, concurrency, timeouts and keys
      // may change between resumed runs (a fleet can grow).
      json settings = {{"model", e.model}, {"api", e.chat ? "chat" : "completions"}, {"chat_format", e.chat_format}};
      if (!e.chat) settings["prompt"] = e.prompt_ids ? "ids" : "text";
      if (e.add_special_tokens >= 0) settings["add_special_tokens"] = e.add_special_tokens == 1;
      d.definition = {{"source", "endpoint:" + e.model},
                      {"method", "endpoint"},
                      {"settings", settings},
                      {"config_checksum", file_checksum(e.tokenizer_dir + "/tokenizer.json")}};
    } else {
      json settings = json::object();
      for (auto& [k, val] : v.settings) settings[k] = val;
      d.definition = {{"source", v.source},
                      {"method", v.method.empty() ? checkpoint_method(v.source) : v.method},
                      {"settings", settings},
                      {"config_checksum", file_checksum(v.source + "/config.json")},
                      {"precision", std::string(precision_name(o.precision))}};
    }
    db->register_variant(d);
  }
  const int64_t run_id = db->register_run(make_run_info(o.command_line, num_threads(), cpu_model_name()));

  const int64_t total = int64_t(o.variants.size() * cells.size()) * o.n;
  int64_t overall_done = 0;
  const auto t_start = std::chrono::steady_clock::now();
  for (size_t vi = 0; vi < o.variants.size(); ++vi) {
    const VariantSpec& v = o.variants[vi];
    // Skip loading (and quantizing) the model when every example is already stored.
    // Indices already stored, per cell (one query per cell, reused below).
    int64_t todo = 0;
    std::vector<std::set<int64_t>> done_sets(cells.size());
    for (size_t ci = 0; ci < cells.size(); ++ci) {
      const Cell& c = cells[ci];
      for (auto i : db->done_indices(v.name, c.suite, c.task, c.length, c.lang, o.seed))
        if (i >= 0 && i < o.n) done_sets[ci].insert(i);
      todo += o.n - int64_t(done_sets[ci].size());
    }
    if (todo == 0) {
      sum.skipped += int64_t(cells.size()) * o.n;
      overall_done += int64_t(cells.size()) * o.n;
      if (!o.quiet) std::fprintf(stderr, "variant %s: all %lld examples already in %s\n", v.name.c_str(),
                                 (long long)(int64_t(cells.size()) * o.n), o.db_path.c_str());
      continue;
    }
    std::unique_ptr<Backend> backend;
    OpenAIBackend* endpoint = nullptr;
    int concurrency = 1, abort_after = 0;
    if (endpoints[vi]) {
      auto b = make_openai_backend(*endpoints[vi]);
      endpoint = b.get();
      backend = std::move(b);
      concurrency = endpoints[vi]->concurrency;
      abort_after = endpoints[vi]->abort_after < 0 ? concurrency + 2 : endpoints[vi]->abort_after;
    } else {
      const std::string dir = resolve_model_dir(o, v);
      NativeOptions no;
      no.precision = o.precision;
      no.chat_format = o.chat_format;
      backend = make_native_backend(dir, no);
    }
    if (!o.quiet) std::fprintf(stderr, "variant %s: %s; %lld examples to run\n", v.name.c_str(),
                               backend->describe().c_str(), (long long)todo);
    PromptCounter counter;
    counter.count = [&](const std::string& m, const std::string& a) { return backend->count_prompt_tokens(m, a); };
    Progress prog("eval " + v.name, todo, "ex", 0.0);
    int64_t vdone = 0;

    // One example on its way: the row to store (key, hash, gold) and the request.
    struct Job {
      ResultRow row;
      GenRequest req;
      std::string task_id, lang;
    };
    // Shared by this thread and the endpoint workers; everything below is guarded by `mu`.
    std::mutex mu;
    std::condition_variable cv_jobs, cv_space;
    std::deque<Job> queue;
    bool closing = false, stopping = false;
    std::exception_ptr worker_error;
    int in_a_row = 0;  // examples in a row that exhausted their retries
    std::string stop_reason;

    // Stores a finished row (caller holds mu).
    auto commit = [&](const ResultRow& row) {
      db->insert_result(row);
      if (row.ok()) ++sum.done; else ++sum.failed;
      ++vdone;
      ++overall_done;
      prog.update(vdone);
    };
    auto finish = [&](Job& job, const GenResponse& r, bool transient) {
      ResultRow& row = job.row;
      row.prediction = r.text;
      row.prompt_tokens = r.prompt_tokens;
      row.generated_tokens = r.generated_tokens;
      row.seconds = r.seconds;
      std::lock_guard<std::mutex> lk(mu);
      if (!r.error.empty()) row.error = r.error;
      else row.score = score_case(job.task_id, job.lang, row.outputs, r.text);
      commit(row);
      if (!transient) {
        in_a_row = 0;
      } else if (++in_a_row >= abort_after && abort_after > 0 && !stopping) {
        stopping = true;
        stop_reason = fmt::format(
            "variant '{}': {} examples in a row failed after every retry (last: {}); stopped with the remaining "
            "examples pending: rerun the same command to resume (failed examples are run again)",
            v.name, in_a_row, r.error);
        cv_space.notify_all();
      }
    };
    // Endpoint workers: take jobs until the queue is closed (or the variant stops).
    std::vector<std::thread> workers;
    auto stop_workers = [&] {
      {
        std::lock_guard<std::mutex> lk(mu);
        closing = true;
      }
      cv_jobs.notify_all();
      for (auto& t : workers) t.join();
      workers.clear();
    };
    struct JoinGuard {
      std::function<void()> f;
      ~JoinGuard() { f(); }
    } join_guard{stop_workers};
    if (endpoint) {
      for (int w = 0; w < concurrency; ++w)
        workers.emplace_back([&] {
          for (;;) {
            Job job;
            {
              std::unique_lock<std::mutex> lk(mu);
              cv_jobs.wait(lk, [&] { return !queue.empty() || closing || stopping; });
              if (queue.empty() || stopping) return;  // stopping: queued examples stay pending
              job = std::move(queue.front());
              queue.pop_front();
            }
            cv_space.notify_one();
            try {
              EndpointResult er = endpoint->call(job.req);
              finish(job, er.response, er.transient);
            } catch (...) {
              std::lock_guard<std::mutex> lk(mu);
              if (!worker_error) worker_error = std::current_exception();
              stopping = true;
              cv_space.notify_all();
            }
          }
        });
    }
    // Hands a job over: runs it here (native) or queues it for the workers,
    // waiting while `concurrency` jobs are already queued. False once the variant stops.
    auto submit = [&](Job&& job) -> bool {
      if (!endpoint) {
        GenResponse r = backend->generate(job.req);
        finish(job, r, false);
        return true;
      }
      std::unique_lock<std::mutex> lk(mu);
      cv_space.wait(lk, [&] { return int(queue.size()) < concurrency || stopping; });
      if (stopping) return false;
      queue.push_back(std::move(job));
      lk.unlock();
      cv_jobs.notify_one();
      return true;
    };

    bool stopped = false;
    for (size_t ci = 0; ci < cells.size() && !stopped; ++ci) {
      const Cell& c = cells[ci];
      const std::string& suite = c.suite;
      const std::string& task = c.task;
      const std::set<int64_t>& done = done_sets[ci];
      if (int64_t(done.size()) == o.n) {
        std::lock_guard<std::mutex> lk(mu);
        sum.skipped += o.n;
        overall_done += o.n;
        continue;
      }
      LQ_CHECK(c.length <= backend->context_length(), "variant '{}': length {} exceeds the model's context of {}",
               v.name, c.length, backend->context_length());
      TaskOptions go;
      go.suite = suite;
      go.task = task;
      go.lang = c.lang;
      go.length = c.length;
      go.seed = o.seed;
      TaskGenerator gen(go, langs, counter);
      const TaskInfo& ti = find_task(c.task_id);
      for (int64_t i = 0; i < o.n; ++i) {
        if (done.count(i)) {
          std::lock_guard<std::mutex> lk(mu);
          ++sum.skipped;
          ++overall_done;
          continue;
        }
        Job job;
        job.row.key = {v.name, suite, task, c.length, c.lang, i, o.seed};
        job.row.run_id = run_id;
        job.task_id = c.task_id;
        job.lang = c.lang;
        auto ex = gen.fitted(i);
        if (!ex) {
          job.row.error = "example does not fit the context (skipped by the generator)";
          std::lock_guard<std::mutex> lk(mu);
          commit(job.row);
          continue;
        }
        job.row.prompt_hash = prompt_hash(ex->input + "\x1f" + ex->answer_prefix);
        job.row.outputs = ex->outputs;
        job.row.depths = ex->depths;
        job.req = GenRequest{ex->input, ex->answer_prefix, ti.gen_tokens};
        if (!submit(std::move(job))) {
          stopped = true;
          break;
        }
      }
    }
    stop_workers();
    prog.finish();
    if (worker_error) std::rethrow_exception(worker_error);
    if (stopping) {
      db->finish_run(run_id);
      fail("{}", stop_reason);
    }
    if (endpoint && !o.quiet) {
      const auto st = endpoint->stats();
      std::fprintf(stderr, "variant %s: %lld requests, %lld retries, %lld failed examples, at most %d in flight\n",
                   v.name.c_str(), (long long)st.attempts, (long long)st.retries, (long long)st.failures,
                   st.max_in_flight);
    }
    if (!o.quiet) {
      // Overall: rate over the examples this run actually evaluated, ETA for the rest.
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
      const int64_t ran = sum.done + sum.failed;
      const double rate = el > 0 ? double(ran) / el : 0.0;
      std::string eta = rate > 0 && overall_done < total ? ", ETA " + format_duration(double(total - overall_done) / rate) : "";
      std::fprintf(stderr, "overall: %lld/%lld examples (%.0f%%), %.2f ex/s, %s elapsed%s\n", (long long)overall_done,
                   (long long)total, 100.0 * double(overall_done) / double(total), rate, format_duration(el).c_str(),
                   eta.c_str());
    }
  }
  db->finish_run(run_id);
  return sum;
}

}  // namespace lq
