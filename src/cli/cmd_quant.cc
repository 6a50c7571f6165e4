// cli/cmd_quant.cc: `quantize` (GPTQ / AWQ / NF4 / FP8 / RTN checkpoints) and
// `divergence` (KL divergence, top-1 agreement and perplexity of a model against a base,
// per position bucket).
#include <cstdio>
#include <memory>

#include "cli/common.h"
#include "eval/results_db.h"
#include "eval/runner.h"
#include <filesystem>
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "io/tokenizer.h"
#include "model/divergence.h"
#include "model/model.h"
#include "model/quantize_model.h"

namespace lq::cli {

void register_quant_commands(CLI::App& app);

namespace {

using json = nlohmann::json;

void cmd_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "Quantize a BF16 checkpoint (fp8, gptq-int8/int4, awq-int4, nf4, rtn-int8/int4)");
  static std::string model, out, method, calib_file;
  static int64_t group_size = 128, samples = 32, len = 512;
  static bool asym = false, act_order = false, static_groups = false, lm_head = false, as_json = false;
  static double damp = 0.01;
  static uint64_t seed = 0;
  static int threads = 0;
  std::string names;
  for (auto& n : quant_method_names()) names += (names.empty() ? "" : "|") + n;
  cmd->add_option("--model", model, "BF16 Hugging Face model directory")->required();
  cmd->add_option("--method", method, names)->required();
  cmd->add_option("--out", out, "output directory")->required();
  cmd->add_option("--group-size", group_size, "group size of gptq/awq/rtn (-1 = per channel)")->capture_default_str();
  cmd->add_flag("--asym", asym, "asymmetric groups with a zero point (gptq/rtn; awq always is)");
  cmd->add_flag("--act-order", act_order, "gptq: quantize columns by descending Hessian diagonal (desc_act, g_idx)");
  cmd->add_flag("--static-groups", static_groups, "gptq with --act-order: group parameters fixed up front (trivial g_idx)");
  cmd->add_option("--damp", damp, "gptq dampening, fraction of mean(diag(H)); raised x10 on Cholesky failure")
      ->capture_default_str();
  cmd->add_option("--calib", calib_file, "calibration text file (plain text or JSONL with a \"text\" field); "
                                         "default: built-in multilingual paragraphs");
  cmd->add_option("--calib-samples", samples, "calibration samples")->capture_default_str();
  cmd->add_option("--calib-len", len, "tokens per calibration sample")->capture_default_str();
  cmd->add_option("--seed", seed, "calibration sampling seed")->capture_default_str();
  cmd->add_flag("--quantize-lm-head", lm_head, "quantize lm_head too (default: kept in bf16, as the study's checkpoints)");
  cmd->add_flag("--json", as_json, "print the run summary as JSON");
  add_threads_option(cmd, &threads);
  cmd->callback([] {
    apply_threads(threads);
    QuantizeOptions o;
    o.method = parse_quant_method(method);
    o.group_size = group_size;
    o.asym = asym;
    o.act_order = act_order;
    o.static_groups = static_groups;
    o.damp = damp;
    o.calib.file = calib_file;
    o.calib.samples = samples;
    o.calib.len = len;
    o.calib.seed = seed;
    o.quantize_lm_head = lm_head;
    LQ_CHECK(damp > 0, "--damp must be positive, got {}", damp);
    LQ_CHECK(!static_groups || act_order, "--static-groups only has an effect with --act-order");
    if (!method_needs_calibration(o.method) && (!calib_file.empty() || act_order))
      fail("--calib / --act-order apply to gptq and awq, not {}", method);
    QuantizeSummary s = quantize_model(model, out, o);
    if (!s.calibration.empty()) std::fprintf(stderr, "calibration: %s\n", s.calibration.c_str());
    std::fprintf(stderr, "wrote %s (%s) in %s\n", out.c_str(), method.c_str(), format_duration(s.seconds).c_str());
    if (as_json) {
      json j = {{"out", out}, {"seconds", s.seconds}, {"settings", s.settings}, {"layers", s.layers}};
      print_json(j, true);
    }
  });
}

void cmd_divergence(CLI::App& app) {
  auto* cmd = app.add_subcommand("divergence",
                                 "KL divergence, top-1 agreement and perplexity of a model against a base model, "
                                 "overall and per position bucket");
  static std::string base, model, text_file, ids_s, prec_s = "bf16";
  static int64_t ctx = 0, bucket = 1024, chunk = 512;
  static bool as_json = false;
  static int threads = 0;
  static std::string db_path, name, base_name = "bf16", label;
  cmd->add_option("--db", db_path, "also store the result in this results database (shown by 'longquant report')");
  cmd->add_option("--name", name, "with --db: the variant name of --model (registered if new)");
  cmd->add_option("--base-name", base_name, "with --db: the variant name of --base")->capture_default_str();
  cmd->add_option("--label", label, "with --db: what was measured (default: text file name or 'ids', plus @tokens)");
  cmd->add_option("--base", base, "reference model directory (e.g. the BF16 checkpoint)")->required();
  cmd->add_option("--model", model, "model directory to compare (e.g. a quantized checkpoint)")->required();
  auto* tf = cmd->add_option("--text-file", text_file, "UTF-8 text, tokenized with the base model's tokenizer");
  auto* ids = cmd->add_option("--ids", ids_s, "comma-separated token ids");
  tf->excludes(ids);
  cmd->add_option("--ctx", ctx, "with --text-file: use the first N tokens (0 = all, up to the context)");
  cmd->add_option("--bucket", bucket, "positions per bucket in by_position")->capture_default_str();
  cmd->add_option("--chunk", chunk, "tokens per lockstep step")->capture_default_str();
  cmd->add_option("--precision", prec_s, "bf16 (default) or fp32 numerics for both models")->capture_default_str();
  cmd->add_flag("--json", as_json, "print JSON");
  add_threads_option(cmd, &threads);
  cmd->callback([] {
    apply_threads(threads);
    LQ_CHECK(!text_file.empty() || !ids_s.empty(), "divergence needs --text-file or --ids");
    LQ_CHECK(ctx >= 0, "--ctx must be >= 0, got {}", ctx);
    const Precision p = parse_precision(prec_s);
    auto mb = Model::load(base);
    auto mm = Model::load(model);
    std::vector<int32_t> tokens;
    if (!ids_s.empty()) {
      tokens = parse_id_list(ids_s, "--ids");
    } else {
      LQ_CHECK(file_exists(base + "/tokenizer.json"), "--text-file needs a tokenizer, but {} has no tokenizer.json; use --ids",
               base);
      Tokenizer tok = Tokenizer::load(base);
      tokens = tok.encode(read_file(text_file), true);
      const int64_t lim = ctx > 0 ? ctx : mb->config().max_position_embeddings;
      if (int64_t(tokens.size()) > lim) tokens.resize(size_t(lim));
    }
    LQ_CHECK(int64_t(tokens.size()) <= std::min(mb->config().max_position_embeddings, mm->config().max_position_embeddings),
             "{} tokens exceed the models' context", tokens.size());
    Progress prog("divergence", int64_t(tokens.size()) - 1, "tok");
    DivergenceOptions o;
    o.bucket = bucket;
    o.chunk = chunk;
    o.precision = p;
    o.progress = [&](int64_t d, int64_t t) { prog.set_total(t); prog.update(d); };
    DivergenceResult r = compute_divergence(*mb, *mm, tokens, o);
    prog.finish();
    json j = r.to_json();
    j["tokens"] = int64_t(tokens.size());
    j["precision"] = std::string(precision_name(p));
    if (!db_path.empty()) {
      LQ_CHECK(!name.empty(), "--db needs --name (the variant name of --model)");
      auto db = ResultsDb::open(db_path);
      auto ensure = [&](const std::string& n, const std::string& dir) {
        if (db->variant(n)) return;  // defined by an earlier eval or divergence run
        VariantDef d;
        d.name = n;
        d.definition = {{"source", dir}, {"method", "as-is"}, {"settings", json::object()},
                        {"config_checksum", file_checksum(dir + "/config.json")},
                        {"precision", std::string(precision_name(p))}};
        db->register_variant(d);
      };
      ensure(base_name, base);
      ensure(name, model);
      IntrinsicResult ir;
      ir.variant = name;
      ir.baseline = base_name;
      std::string what = text_file.empty() ? std::string("ids") : std::filesystem::path(text_file).filename().string();
      ir.label = label.empty() ? fmt::format("{}@{}", what, tokens.size()) : label;
      ir.tokens = int64_t(tokens.size());
      ir.kld_mean = r.overall.kld_mean;
      ir.top1_agreement = r.overall.top1_agreement;
      ir.ppl_base = r.overall.ppl_base;
      ir.ppl_model = r.overall.ppl_model;
      // The report's layout: parallel arrays keyed by bucket end position.
      json positions = json::array(), kld = json::array(), top1 = json::array(), pb = json::array(),
           pm = json::array();
      for (const auto& b : r.by_position) {
        positions.push_back(b.end);
        kld.push_back(b.kld_mean);
        top1.push_back(b.top1_agreement);
        pb.push_back(b.ppl_base);
        pm.push_back(b.ppl_model);
      }
      ir.by_position = {{"positions", positions}, {"kld", kld}, {"top1", top1}, {"ppl_base", pb}, {"ppl_model", pm}};
      db->put_intrinsic(ir);
      std::fprintf(stderr, "stored divergence of %s vs %s as '%s' in %s\n", name.c_str(), base_name.c_str(),
                   ir.label.c_str(), db_path.c_str());
    }
    if (as_json) {
      print_json(j);
      return;
    }
    std::printf("%lld positions: KL(base||model) mean %.6f, top-1 agreement %.4f, ppl base %.4f model %.4f\n",
                (long long)r.overall.n, r.overall.kld_mean, r.overall.top1_agreement, r.overall.ppl_base,
                r.overall.ppl_model);
    for (const auto& b : r.by_position)
      std::printf("  [%6lld, %6lld)  KL %.6f  top-1 %.4f  ppl %.4f / %.4f\n", (long long)b.start, (long long)b.end,
                  b.kld_mean, b.top1_agreement, b.ppl_base, b.ppl_model);
  });
}

}  // namespace

void register_quant_commands(CLI::App& app) {
  cmd_quantize(app);
  cmd_divergence(app);
}

}  // namespace lq::cli
