// cli/cmd_eval.cc: `longquant eval`, the study as a command.
#include <cstdio>

#include "cli/common.h"
#include "core/error.h"
#include "core/threads.h"
#include "eval/runner.h"
#include "eval/tasks.h"
#include "model/quantize_model.h"

namespace lq::cli {

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// method=M on a variant: quantize with the driver, settings as key=value.
void quantize_for_eval(const std::string& source, const std::string& method,
                       const std::map<std::string, std::string>& settings, const std::string& out_dir) {
  QuantizeOptions q;
  q.method = parse_quant_method(method);
  for (auto& [k, v] : settings) {
    try {
      if (k == "group_size" || k == "group-size") q.group_size = std::stoll(v);
      else if (k == "asym") q.asym = v == "1" || v == "true";
      else if (k == "act_order" || k == "act-order") q.act_order = v == "1" || v == "true";
      else if (k == "damp") q.damp = std::stod(v);
      else if (k == "calib") q.calib.file = v;
      else if (k == "calib_samples" || k == "calib-samples") q.calib.samples = std::stoll(v);
      else if (k == "calib_len" || k == "calib-len") q.calib.len = std::stoll(v);
      else if (k == "quantize_lm_head") q.quantize_lm_head = v == "1" || v == "true";
      else fail("variant setting '{}={}' is not a quantization setting (group_size, asym, act_order, damp, "
                "calib, calib_samples, calib_len, quantize_lm_head)", k, v);
    } catch (const std::invalid_argument&) {
      fail("variant setting '{}={}': not a number", k, v);
    }
  }
  quantize_model(source, out_dir, q);
}

}  // namespace

void register_eval_commands(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Run model variants over long-context tasks, lengths and languages; every result is stored in a "
      "resumable SQLite database");
  static std::vector<std::string> variants;
  static std::string tasks, lengths, langs, db, baseline, oneruler, study, prec = "bf16", chat = "auto",
                                                                         cache = ".cache/quantized";
  static int64_t n = 50;
  static uint64_t seed = 1;
  static int threads = 0;
  static bool as_json = false, chat_api = false;
  cmd->add_option("--variant", variants,
                  "NAME=SOURCE[,method=M][,key=value...] (repeatable). SOURCE: a model directory (BF16 or "
                  "quantized); method=fp8|gptq-int8|gptq-int4|awq-int4|nf4|rtn-int8|rtn-int4 quantizes a BF16 "
                  "directory first (cached). SOURCE may also be an OpenAI-compatible endpoint: "
                  "NAME=http://HOST:PORT/v1[|URL2...],model=SERVED_NAME,tokenizer=DIR[,concurrency=N]"
                  "[,api_key_env=VAR][,chat=1][,timeout=S][,retries=N][,prompt=text|ids][,chat_format=F] "
                  "(docs/endpoints.md)");
  cmd->add_option("--tasks", tasks, "comma-separated SUITE/TASK list (see 'longquant tasks list')");
  cmd->add_option("--lengths", lengths, "comma-separated target lengths in tokens: 1k,2k,8k or integers");
  cmd->add_option("--langs", langs, "comma-separated languages (default en)");
  cmd->add_option("--n", n, "examples per cell")->capture_default_str();
  cmd->add_option("--seed", seed, "task seed")->capture_default_str();
  cmd->add_option("--db", db, "results database (SQLite; created if absent, resumed if present)")->required();
  cmd->add_option("--baseline", baseline, "baseline variant (default: 'bf16' if present, else the first)");
  cmd->add_option("--oneruler-data", oneruler, "OneRuler's data directory (all 26 languages and their books)");
  cmd->add_option("--study", study, "study file (JSON) with variants, tasks, lengths, langs, n, seed, baseline");
  cmd->add_option("--precision", prec, "engine numerics: bf16 (default) or fp32")->capture_default_str();
  cmd->add_option("--chat-format", chat, "auto, llama3, chatml or raw")->capture_default_str();
  cmd->add_option("--cache", cache, "where variants quantized on the fly are kept")->capture_default_str();
  cmd->add_flag("--chat-api", chat_api,
                "endpoint variants use /v1/chat/completions (the server's chat template) unless they say chat=0");
  cmd->add_flag("--json", as_json, "print a JSON summary at the end");
  add_threads_option(cmd, &threads);
  cmd->callback([cmd] {
    apply_threads(threads);
    EvalOptions o;
    for (auto& v : variants) o.variants.push_back(VariantSpec::parse(v));
    o.tasks = split_list(tasks);
    for (auto& l : split_list(lengths)) o.lengths.push_back(parse_length(l));
    o.langs = split_list(langs);
    o.n = n;
    o.seed = seed;
    o.db_path = db;
    o.baseline = baseline;
    o.oneruler_data = oneruler;
    o.cache_dir = cache;
    o.chat_format = chat;
    o.chat_api = chat_api;
    o.threads = threads;
    if (!study.empty()) {
      load_study_file(study, &o, !variants.empty(), !tasks.empty(), !lengths.empty(), !langs.empty());
      if (cmd->count("--n")) o.n = n;
      if (cmd->count("--seed")) o.seed = seed;
    }
    if (cmd->count("--precision") || study.empty()) o.precision = parse_precision(prec);
    o.quantize = quantize_for_eval;
    std::string cl = "longquant eval";
    for (auto& v : variants) cl += " --variant " + v;
    if (!tasks.empty()) cl += " --tasks " + tasks;
    if (!lengths.empty()) cl += " --lengths " + lengths;
    if (!langs.empty()) cl += " --langs " + langs;
    if (!study.empty()) cl += " --study " + study;
    if (chat_api) cl += " --chat-api";
    cl += " --n " + std::to_string(o.n) + " --seed " + std::to_string(o.seed) + " --db " + db;
    o.command_line = cl;
    EvalSummary s = run_eval(o);
    if (as_json) {
      print_json(s.to_json(), true);
    } else {
      std::fprintf(stderr, "eval: %lld examples evaluated, %lld already done, %lld failed; results in %s\n",
                   (long long)s.done, (long long)s.skipped, (long long)s.failed, db.c_str());
    }
  });
}

}  // namespace lq::cli
