// cli/cmd_tasks.cc: `longquant tasks list | generate | score` -- the
// long-context task suites of src/eval/tasks.h (RULER, OneRuler, NoCha, QA).
//
//   tasks list [--json] [--oneruler-data DIR]
//   tasks generate --suite S --task T --length 8k --lang en --n 50 --seed 1 --model DIR
//                  [--oneruler-data DIR] [--depths 10,50,90] [--haystack FILE...]
//                  [--chat-format auto|llama3|chatml|raw] [--data PATH] --out FILE.jsonl
//   tasks score --task SUITE/TASK --lang L (--gold '["..."]' --pred TEXT | --in FILE.jsonl) [--json]
//
// Token counts come from the model's own tokenizer and chat template: the
// prompt is rendered as one user message with the generation prompt, the
// answer prefix is appended, and the string is encoded without extra special
// tokens (chat_prompt_counter in eval/tasks.h).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/common.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/tasks.h"
#include "io/chat_template.h"
#include "io/tokenizer.h"

namespace lq::cli {

void register_tasks_commands(CLI::App& app);

namespace {

using json = nlohmann::json;

LanguageSet load_languages(const std::string& oneruler_dir) {
  LanguageSet langs = LanguageSet::builtin();
  if (!oneruler_dir.empty()) langs.load_oneruler_dir(oneruler_dir);
  return langs;
}

// The model's architecture from config.json (for chat-format auto-detection),
// "" when the directory holds only tokenizer files.
std::string architecture_of(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream f(path);
  if (!f.good()) return "";
  try {
    json j = json::parse(f);
    if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
        j["architectures"][0].is_string())
      return j["architectures"][0].get<std::string>();
  } catch (const json::exception& e) {
    fail("'{}': not valid JSON: {}", path, e.what());
  }
  return "";
}

void cmd_list(CLI::App* parent) {
  auto* cmd = parent->add_subcommand("list", "List every suite/task with its languages, generation budget and scorer");
  static bool as_json = false;
  static std::string oneruler;
  cmd->add_flag("--json", as_json, "print JSON");
  cmd->add_option("--oneruler-data", oneruler, "OneRuler data directory (adds its 26 languages)");
  cmd->callback([] {
    json j = task_list_json(load_languages(oneruler));
    if (as_json) {
      print_json(j);
      return;
    }
    for (const auto& t : j) {
      std::string langs;
      for (const auto& l : t["languages"]) langs += (langs.empty() ? "" : ",") + l.get<std::string>();
      std::printf("%-26s gen %4lld  scorer %-16s langs %s%s\n    %s\n", t["id"].get<std::string>().c_str(),
                  static_cast<long long>(t["gen_tokens"].get<int64_t>()), t["scorer"].get<std::string>().c_str(),
                  langs.c_str(), t["implemented"].get<bool>() ? "" : "  (not implemented)",
                  t["description"].get<std::string>().c_str());
    }
  });
}

void cmd_generate(CLI::App* parent) {
  auto* cmd = parent->add_subcommand("generate", "Generate task examples fitted to a token budget (JSONL)");
  static std::string text_out, suite = "ruler", task, length_s = "8k", lang = "en", model, oneruler, depths_s, chat = "auto",
                     data, nocha_prompt = "prompt.txt", out;
  static std::vector<std::string> haystack;
  static int64_t n = 50, first = 0;
  static uint64_t seed = 1;
  static int threads = 0;
  cmd->add_option("--suite", suite, "ruler, oneruler, nocha or qa")->capture_default_str();
  cmd->add_option("--task", task, "task name (see 'tasks list'), e.g. niah_single_1, niah_none, cwe, claims, qa")
      ->required();
  cmd->add_option("--length", length_s, "target length in tokens incl. the generation budget: 8k, 128k, 5000")
      ->capture_default_str();
  cmd->add_option("--lang", lang, "language code (OneRuler tasks; others are English)")->capture_default_str();
  cmd->add_option("--n", n, "number of examples (nocha/qa: < 0 = all)")->capture_default_str();
  cmd->add_option("--first-index", first, "index of the first example")->capture_default_str();
  cmd->add_option("--seed", seed, "seed")->capture_default_str();
  cmd->add_option("--model", model, "directory with tokenizer.json (+ tokenizer_config.json, config.json)")
      ->required();
  cmd->add_option("--oneruler-data", oneruler, "OneRuler data directory (books, prompts, vocab)");
  cmd->add_option("--depths", depths_s, "needle depths in percent, e.g. 10,50,90 (default: 40-point grid)");
  cmd->add_option("--haystack", haystack, "UTF-8 text file(s) used as the haystack (cwe: as the word list)");
  cmd->add_option("--chat-format", chat, "auto (from tokenizer_config/config.json), llama3, chatml or raw")
      ->capture_default_str();
  cmd->add_option("--data", data, "nocha: NoCha directory (claims.json, books.jsonl, prompt.txt); qa: JSONL file");
  cmd->add_option("--nocha-prompt", nocha_prompt, "prompt file inside the NoCha directory")->capture_default_str();
  cmd->add_option("--out", out, "output JSONL file")->required();
  cmd->add_option("--text-out", text_out,
                  "also write the examples' user messages (prompt text without chat template) to this file, "
                  "one after another, e.g. as a haystack for `longquant divergence --text-file`");
  add_threads_option(cmd, &threads);
  cmd->callback([] {
    apply_threads(threads);
    TaskOptions o;
    o.suite = suite;
    o.task = task;
    o.lang = lang;
    o.length = parse_length(length_s);
    o.n = n;
    o.seed = seed;
    o.first_index = first;
    if (!depths_s.empty()) o.depths.list = parse_depths(depths_s);
    o.haystack_files = haystack;
    o.data = data;
    o.nocha_prompt = nocha_prompt;
    // Validate the task and language before loading anything heavy.
    const TaskInfo& info = find_task(suite, task);
    LanguageSet langs = load_languages(oneruler);
    if (suite == "oneruler") langs.get(lang);
    LQ_CHECK(std::filesystem::is_regular_file(model + "/tokenizer.json"),
             "--model '{}': no tokenizer.json there (a model or tokenizer directory is needed to count tokens)",
             model);
    Tokenizer tok = Tokenizer::load(model);
    ChatFormat fmt = chat == "auto" ? detect_chat_format(model, architecture_of(model)) : parse_chat_format(chat);
    PromptCounter counter = chat_prompt_counter(tok, fmt);
    Progress prog("tasks generate " + info.id(), n >= 0 ? n : 0, "examples");
    o.progress = [&prog](int64_t done, int64_t total) {
      prog.set_total(total);
      prog.update(done);
    };
    GenerateReport rep;
    auto t0 = std::chrono::steady_clock::now();
    auto ex = generate_examples(o, langs, counter, &rep);
    prog.finish();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    write_examples_jsonl(out, ex);
    if (!text_out.empty()) {
      std::ofstream tf(text_out, std::ios::binary);
      for (const auto& e : ex) tf << e.input << (ex.size() > 1 ? "\n\n" : "");
      LQ_CHECK(tf.good(), "cannot write {}", text_out);
    }
    int64_t tmin = 0, tmax = 0;
    for (size_t i = 0; i < ex.size(); ++i) {
      tmin = i ? std::min(tmin, ex[i].token_count) : ex[i].token_count;
      tmax = i ? std::max(tmax, ex[i].token_count) : ex[i].token_count;
    }
    json s = rep.to_json();
    s["out"] = out;
    s["task"] = info.id();
    s["lang"] = lang;
    s["length"] = o.length;
    s["gen_tokens"] = info.gen_tokens;
    s["chat_format"] = std::string(chat_format_name(fmt));
    s["token_count_min"] = tmin;
    s["token_count_max"] = tmax;
    s["seconds"] = secs;
    for (const auto& note : rep.notes) std::fprintf(stderr, "longquant: note: %s\n", note.c_str());
    print_json(s);
  });
}

void cmd_score(CLI::App* parent) {
  auto* cmd = parent->add_subcommand("score", "Score a prediction (or a JSONL of predictions) as the reference does");
  static std::string task, lang = "en", gold_s, pred, in;
  static bool as_json = false;
  cmd->add_option("--task", task, "SUITE/TASK, e.g. oneruler/niah_single (file lines may carry their own)");
  cmd->add_option("--lang", lang, "language of the instructions (OneRuler none words)")->capture_default_str();
  cmd->add_option("--gold", gold_s, "gold answers as a JSON array of strings, e.g. '[\"1234567\"]'");
  static CLI::Option* pred_opt = nullptr;
  pred_opt = cmd->add_option("--pred", pred, "the model's answer");
  cmd->add_option("--in", in, "JSONL with outputs and pred/prediction/output/response-* per line");
  cmd->add_flag("--json", as_json, "print JSON");
  cmd->callback([] {
    if (!in.empty()) {
      LQ_CHECK(gold_s.empty() && pred_opt->count() == 0, "give either --in FILE or --gold with --pred, not both");
      if (!task.empty()) find_task(task);
      FileScore fs = score_predictions_jsonl(in, task, lang);
      print_json(fs.to_json());
      return;
    }
    LQ_CHECK(!task.empty(), "--task SUITE/TASK is required to score a single case");
    LQ_CHECK(!gold_s.empty(), "--gold is required (a JSON array of strings) unless --in FILE is given");
    LQ_CHECK(pred_opt->count() > 0, "--pred is required unless --in FILE is given");
    json g;
    try {
      g = json::parse(gold_s);
    } catch (const json::exception& e) {
      fail("--gold: not valid JSON ({}); give an array of strings such as '[\"1234567\"]'", e.what());
    }
    if (g.is_string()) g = json::array({g});
    LQ_CHECK(g.is_array(), "--gold must be a JSON array of strings");
    std::vector<std::string> gold;
    for (const auto& x : g) {
      LQ_CHECK(x.is_string(), "--gold must hold strings only, got {}", x.dump());
      gold.push_back(x.get<std::string>());
    }
    double s = score_case(task, lang, gold, pred);
    if (as_json) print_json({{"score", s}});
    else std::printf("%.6g\n", s);
  });
}

}  // namespace

void register_tasks_commands(CLI::App& app) {
  auto* tasks = app.add_subcommand("tasks", "Long-context task suites: list, generate examples, score answers");
  tasks->require_subcommand(1);
  cmd_list(tasks);
  cmd_generate(tasks);
  cmd_score(tasks);
}

}  // namespace lq::cli
