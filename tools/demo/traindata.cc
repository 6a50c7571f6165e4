// tools/demo/traindata.cc: `lq-traindata`, training data for the demo model.
//
// The demo model (models/demo, issue 6) is trained on exactly the prompts that
// `longquant eval` will show it: this program drives the same task generators
// (eval/tasks.h) and the same prompt rendering (backends/backend.h
// PromptRenderer: the model's chat template around the task's user message,
// then the task's answer prefix), with the demo tokenizer, and writes token ids.
// Only the seed differs from an evaluation (use seeds the study never uses).
//
// Each example picks (task, language, length) from the lists given, with a
// per-example RNG seeded by (seed, index), so a file is a pure function of its
// arguments and any thread count. Its target is the answer in the format the
// task's scorer reads:
//   RULER (answer prefix "... are"):   " 1234567."            (values joined by ", ")
//   OneRuler (format line "<Answer> the numbers </Answer>", in the instruction
//   language):                          "<Answer> 1234567 </Answer>"  (the none word for niah_none)
// followed by <|eot_id|>.
//
// Output (little-endian): "LQTD0001", then per example
//   u32 prompt_len, u32 target_len, u16 task_id, u16 lang_id, u16 ids[prompt_len + target_len]
// and a JSON sidecar FILE.json with the task and language tables and counts.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/rng.h"
#include "eval/languages.h"
#include "eval/tasks.h"
#include "io/chat_template.h"
#include "io/hf_config.h"
#include "io/tokenizer.h"

namespace {

using namespace lq;

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p <= s.size()) {
    size_t q = s.find(',', p);
    if (q == std::string::npos) q = s.size();
    if (q > p) out.push_back(s.substr(p, q - p));
    p = q + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

// The answer text the task's scorer accepts (see the file comment).
std::string target_text(const Example& e) {
  if (e.suite == "ruler") return " " + join(e.outputs, ", ") + ".";
  // OneRuler: the last "<X> ... </X>" line of the instructions names the tag.
  static const std::regex tag_re("<([^<>/]+)>[^\\n]*</([^<>/]+)>");
  std::string tag;
  for (std::sregex_iterator it(e.input.begin(), e.input.end(), tag_re), end; it != end; ++it)
    if ((*it)[1] == (*it)[2]) tag = (*it)[1];
  LQ_CHECK(!tag.empty(), "{}/{} ({}): no <tag> ... </tag> answer format line in the prompt", e.suite, e.task, e.lang);
  return "<" + tag + "> " + join(e.outputs, ", ") + " </" + tag + ">";
}

struct Choice {
  std::string suite, task, lang;
  int64_t length;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Training data for the demo model: task prompts as token ids with their answers"};
  std::string model, out, tasks_s = "ruler/niah_single_1", langs_s = "en", lengths_s = "512";
  int64_t n = 1000, first = 0;
  uint64_t seed = 1000;
  int threads = 0;
  std::string words_out;
  app.add_option("--print-words", words_out,
                 "instead: write every key word the generators can draw (each built-in language's nouns and the "
                 "English word list) to this file, one per line, for the tokenizer corpus");
  app.add_option("--model", model, "directory with the demo tokenizer.json and tokenizer_config.json");
  app.add_option("--out", out, "output file (.bin; a .json sidecar is written beside it)");
  app.add_option("--tasks", tasks_s, "SUITE/TASK[:WEIGHT],... (OneRuler tasks use every --langs language)")
      ->capture_default_str();
  app.add_option("--langs", langs_s, "languages for OneRuler tasks")->capture_default_str();
  app.add_option("--lengths", lengths_s, "target lengths (tokens incl. generation budget), one drawn per example")
      ->capture_default_str();
  app.add_option("--n", n, "examples")->capture_default_str();
  app.add_option("--first-index", first, "index of the first example")->capture_default_str();
  app.add_option("--seed", seed, "seed (keep it away from evaluation seeds)")->capture_default_str();
  app.add_option("-t,--threads", threads, "threads (0 = all)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    if (!words_out.empty()) {
      std::ofstream w(words_out);
      const LanguageSet ls = LanguageSet::builtin();
      for (const auto& code : ls.codes())
        for (const auto& noun : ls.get(code).nouns) w << noun << "\n";
      for (const auto& word : builtin_english_words()) w << word << "\n";
      LQ_CHECK(w.good(), "cannot write {}", words_out);
      return 0;
    }
    LQ_CHECK(!model.empty() && !out.empty(), "--model and --out are required");
    if (threads > 0) omp_set_num_threads(threads);
    const LanguageSet langs = LanguageSet::builtin();
    Tokenizer tok = Tokenizer::load(model);
    const ChatFormat fmt = detect_chat_format(model, "LlamaForCausalLM");
    const PromptRenderer renderer(tok, fmt);
    const PromptCounter counter = chat_prompt_counter(tok, fmt);
    const auto eot = tok.token_to_id("<|eot_id|>");
    LQ_CHECK(eot.has_value(), "{}: the tokenizer has no <|eot_id|> token", model);

    std::vector<std::string> task_ids, lang_ids = split_list(langs_s);
    std::vector<double> weights;
    std::vector<Choice> choices;  // (task, lang) pairs with their weight
    std::vector<double> cw;
    for (const std::string& item : split_list(tasks_s)) {
      const size_t colon = item.find(':');
      const std::string id = item.substr(0, colon);
      const double w = colon == std::string::npos ? 1.0 : std::stod(item.substr(colon + 1));
      const TaskInfo& info = find_task(id);
      task_ids.push_back(info.id());
      const std::vector<std::string> ls = info.suite == "oneruler" ? lang_ids : std::vector<std::string>{"en"};
      for (const auto& l : ls) {
        choices.push_back({info.suite, info.name, l, 0});
        cw.push_back(w / ls.size());
      }
    }
    std::vector<int64_t> lengths;
    for (const auto& s : split_list(lengths_s)) lengths.push_back(parse_length(s));
    LQ_CHECK(!choices.empty() && !lengths.empty(), "--tasks and --lengths must not be empty");
    double wsum = 0;
    for (double w : cw) wsum += w;

    std::vector<std::vector<uint16_t>> recs(n);
    std::vector<std::array<uint32_t, 2>> lens(n);
    std::vector<std::array<uint16_t, 2>> meta(n);
    Progress prog("lq-traindata " + out, n, "examples");
    int64_t done = 0;
    std::string error;  // the first exception thrown inside the parallel loop
#pragma omp parallel
    {
      // Per-thread generators, one per (task, lang, length) configuration.
      std::map<std::string, std::pair<std::unique_ptr<TaskOptions>, std::unique_ptr<TaskGenerator>>> gens;
#pragma omp for schedule(dynamic, 4)
      for (int64_t k = 0; k < n; ++k) {
        if (!error.empty()) continue;
        try {
        const int64_t index = first + k;
        Rng rng(seed * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(index) * 0xD1B54A32D192ED03ull);
        double u = rng.uniform() * wsum;
        size_t c = 0;
        while (c + 1 < choices.size() && u >= cw[c]) u -= cw[c++];
        const int64_t length = lengths[rng.below(lengths.size())];
        Choice ch = choices[c];
        const std::string key = fmt::format("{}/{}/{}/{}", ch.suite, ch.task, ch.lang, length);
        auto& g = gens[key];
        if (!g.second) {
          g.first = std::make_unique<TaskOptions>();
          g.first->suite = ch.suite;
          g.first->task = ch.task;
          g.first->lang = ch.lang;
          g.first->length = length;
          g.first->seed = seed;
          g.second = std::make_unique<TaskGenerator>(*g.first, langs, counter);
        }
        std::optional<Example> e = g.second->fitted(index);
        LQ_CHECK(e.has_value(), "{}: example {} could not be built", key, index);
        std::vector<int32_t> p = renderer.encode(e->input, e->answer_prefix);
        std::vector<int32_t> t = tok.encode(target_text(*e), /*add_special=*/false);
        t.push_back(*eot);
        auto& r = recs[k];
        r.reserve(p.size() + t.size());
        for (int32_t id : p) r.push_back(static_cast<uint16_t>(id));
        for (int32_t id : t) r.push_back(static_cast<uint16_t>(id));
        lens[k] = {static_cast<uint32_t>(p.size()), static_cast<uint32_t>(t.size())};
        const std::string tid = ch.suite + "/" + ch.task;
        meta[k] = {static_cast<uint16_t>(std::find(task_ids.begin(), task_ids.end(), tid) - task_ids.begin()),
                   static_cast<uint16_t>(ch.suite == "oneruler"
                                             ? std::find(lang_ids.begin(), lang_ids.end(), ch.lang) - lang_ids.begin()
                                             : 0xFFFF)};
#pragma omp critical
        prog.update(++done);
        } catch (const std::exception& ex) {
#pragma omp critical
          if (error.empty()) error = ex.what();
        }
      }
    }
    prog.finish();
    LQ_CHECK(error.empty(), "{}", error);
    LQ_CHECK(tok.vocab_size() <= 65536, "vocabulary of {} ids does not fit u16", tok.vocab_size());
    std::ofstream f(out, std::ios::binary);
    LQ_CHECK(f.good(), "cannot write {}", out);
    f.write("LQTD0001", 8);
    int64_t tokens = 0;
    for (int64_t k = 0; k < n; ++k) {
      f.write(reinterpret_cast<const char*>(lens[k].data()), 8);
      f.write(reinterpret_cast<const char*>(meta[k].data()), 4);
      f.write(reinterpret_cast<const char*>(recs[k].data()), static_cast<std::streamsize>(recs[k].size() * 2));
      tokens += static_cast<int64_t>(recs[k].size());
    }
    LQ_CHECK(f.good(), "write error on {}", out);
    nlohmann::json side = {{"tasks", task_ids}, {"langs", lang_ids}, {"lengths", lengths}, {"n", n},
                           {"first_index", first}, {"seed", seed}, {"tokens", tokens}};
    std::ofstream(out + ".json") << side.dump(1) << "\n";
    std::fprintf(stderr, "%s: %lld examples, %lld tokens\n", out.c_str(), static_cast<long long>(n),
                 static_cast<long long>(tokens));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lq-traindata: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
