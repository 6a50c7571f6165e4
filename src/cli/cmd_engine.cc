// cli/cmd_engine.cc: info, tokenize, logits, generate, bench, synth.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/common.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/profile.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/threads.h"
#include "io/chat_template.h"
#include "io/tokenizer.h"
#include "kernels/cpu/matmul.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/synth.h"

namespace lq::cli {

using json = nlohmann::json;

namespace {

const char* kPrecisionHelp =
    "numerics: bf16 (default; matmul inputs and KV cache in bf16 as GPU inference computes, fast on "
    "AMX/AVX512-BF16) or fp32 (activations and KV cache fp32 everywhere; the exact mode)";

std::string rope_type_name(RopeType t) {
  switch (t) {
    case RopeType::Default: return "default";
    case RopeType::Linear: return "linear";
    case RopeType::Llama3: return "llama3";
    case RopeType::Yarn: return "yarn";
  }
  return "?";
}

bool has_tokenizer(const std::string& dir) { return file_exists(dir + "/tokenizer.json"); }

// Session sized to the request, with prefill progress on stderr.
std::unique_ptr<Session> make_session(const Model& m, int64_t needed, Precision p, Progress* prog,
                                      int64_t chunk = 512) {
  SessionOptions so;
  so.precision = p;
  LQ_CHECK(chunk >= 1, "--chunk must be >= 1, got {}", chunk);
  so.chunk_size = chunk;
  so.capacity = std::min<int64_t>(std::max<int64_t>(needed, 1), m.config().max_position_embeddings);
  if (needed > m.config().max_position_embeddings) {
    fail("the request needs {} tokens but the model's context (max_position_embeddings) is {}", needed,
         m.config().max_position_embeddings);
  }
  if (prog) so.progress = [prog](int64_t d, int64_t t) { prog->set_total(t); prog->update(d); };
  return std::make_unique<Session>(m, so);
}

void cmd_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Describe a model directory: architecture, size, context, RoPE, KV cost");
  static std::string dir;
  static bool as_json = false;
  static int threads = 0;
  cmd->add_option("--model", dir, "Hugging Face model directory")->required();
  cmd->add_flag("--json", as_json, "print JSON");
  add_threads_option(cmd, &threads);
  cmd->callback([] {
    apply_threads(threads);
    auto m = Model::load(dir, WeightStorage::Mapped);  // inspection only: no weight copy
    const ModelConfig& c = m->config();
    json j = {{"model", dir},
              {"architecture", c.architecture},
              {"model_type", c.model_type},
              {"parameters", m->parameter_count()},
              {"weights_bytes", m->weight_bytes()},
              {"dtype", c.torch_dtype.empty() ? "bfloat16" : c.torch_dtype},
              {"quantization", c.quantization_method.empty() ? "none" : c.quantization_method},
              {"vocab_size", c.vocab_size},
              {"hidden_size", c.hidden_size},
              {"intermediate_size", c.intermediate_size},
              {"num_layers", c.num_layers},
              {"num_heads", c.num_heads},
              {"num_kv_heads", c.num_kv_heads},
              {"head_dim", c.head_dim},
              {"context", c.max_position_embeddings},
              {"tie_word_embeddings", c.tie_word_embeddings},
              {"attention_bias", c.attention_bias},
              {"rope", {{"theta", c.rope_theta},
                        {"type", rope_type_name(c.rope_scaling.type)},
                        {"factor", c.rope_scaling.factor},
                        {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings},
                        {"attention_factor", m->rope_attention_factor()}}},
              {"kv_bytes_per_token", {{"bf16", m->kv_bytes_per_token(Precision::BF16)},
                                      {"fp32", m->kv_bytes_per_token(Precision::F32)}}},
              {"eos_token_ids", c.eos_token_ids},
              {"tokenizer", has_tokenizer(dir)}};
    if (as_json) { print_json(j, true); return; }
    std::printf("%s (%s)\n", dir.c_str(), c.architecture.c_str());
    std::printf("  parameters      %.3f B (%lld bytes of weights)\n", double(m->parameter_count()) / 1e9,
                (long long)m->weight_bytes());
    std::printf("  layers          %lld, hidden %lld, intermediate %lld\n", (long long)c.num_layers,
                (long long)c.hidden_size, (long long)c.intermediate_size);
    std::printf("  attention       %lld heads, %lld KV heads, head_dim %lld%s\n", (long long)c.num_heads,
                (long long)c.num_kv_heads, (long long)c.head_dim, c.attention_bias ? ", qkv bias" : "");
    std::printf("  context         %lld tokens\n", (long long)c.max_position_embeddings);
    std::printf("  rope            theta %g, %s (factor %g), attention factor %.6f\n", c.rope_theta,
                rope_type_name(c.rope_scaling.type).c_str(), c.rope_scaling.factor, m->rope_attention_factor());
    std::printf("  KV cache        %lld bytes/token in bf16, %lld in fp32\n",
                (long long)m->kv_bytes_per_token(Precision::BF16), (long long)m->kv_bytes_per_token(Precision::F32));
    std::printf("  vocab           %lld%s\n", (long long)c.vocab_size, c.tie_word_embeddings ? " (tied embeddings)" : "");
  });
}

void cmd_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Encode a text file with a model's tokenizer.json");
  static std::string dir, file;
  static bool add_special = false, as_json = false;
  cmd->add_option("--model", dir, "directory with tokenizer.json (and tokenizer_config.json)")->required();
  cmd->add_option("--text-file", file, "UTF-8 text file to encode")->required();
  cmd->add_flag("--add-special", add_special, "add the tokenizer's special tokens (e.g. Llama-3's <|begin_of_text|>)");
  cmd->add_flag("--json", as_json, "print a JSON array of ids (default: one id per line)");
  cmd->callback([] {
    Tokenizer tok = Tokenizer::load(dir);
    const std::string text = read_file(file);
    auto ids = tok.encode(text, add_special);
    if (as_json) { print_json(json(ids)); return; }
    for (auto id : ids) std::printf("%d\n", id);
  });
}

void cmd_logits(CLI::App& app) {
  auto* cmd = app.add_subcommand("logits", "Print the logits of the last positions of a token sequence");
  static std::string dir, ids_s, prec_s = "bf16";
  static int64_t last = 1, chunk = 512;
  static bool as_json = false;
  static int threads = 0;
  cmd->add_option("--model", dir, "Hugging Face model directory")->required();
  cmd->add_option("--ids", ids_s, "comma-separated token ids")->required();
  cmd->add_option("--last", last, "number of final positions to print")->capture_default_str();
  cmd->add_option("--precision", prec_s, kPrecisionHelp)->capture_default_str();
  cmd->add_option("--chunk", chunk, "prefill chunk size in tokens")->capture_default_str();
  cmd->add_flag("--json", as_json, "print {\"logits\": [[...], ...]}");
  add_threads_option(cmd, &threads);
  cmd->callback([] {
    apply_threads(threads);
    const Precision p = parse_precision(prec_s);
    auto ids = parse_id_list(ids_s, "--ids");
    LQ_CHECK(last >= 1 && last <= int64_t(ids.size()), "--last must be in [1, {}], got {}", ids.size(), last);
    auto m = Model::load(dir);
    Progress prog("prefill", int64_t(ids.size()), "tok");
    auto s = make_session(*m, int64_t(ids.size()), p, &prog, chunk);
    auto logits = s->forward(ids, last);
    prog.finish();
    const int64_t V = m->config().vocab_size;
    json rows = json::array();
    for (int64_t r = 0; r < last; ++r)
      rows.push_back(std::vector<float>(logits.begin() + r * V, logits.begin() + (r + 1) * V));
    if (as_json) { print_json(json{{"logits", rows}}); return; }
    for (int64_t r = 0; r < last; ++r) {
      const float* row = logits.data() + r * V;
      const int32_t a = argmax(row, V);
      std::printf("position %lld: argmax %d (logit %.5f)\n", (long long)(int64_t(ids.size()) - last + r), a, row[a]);
    }
  });
}

void cmd_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate a continuation (greedy or sampled)");
  static std::string dir, prompt, prompt_file, ids_s, prec_s = "bf16", chat_format = "auto", system;
  static bool chat = false, greedy = false, as_json = false;
  static int64_t max_tokens = 128;
  static float temperature = 0.0f, top_p = 1.0f;
  static uint64_t seed = 0;
  static std::vector<std::string> stops;
  static int threads = 0;
  cmd->add_option("--model", dir, "Hugging Face model directory")->required();
  auto* g = cmd->add_option_group("input", "exactly one prompt source");
  g->add_option("--prompt", prompt, "prompt text");
  g->add_option("--prompt-file", prompt_file, "file holding the prompt text");
  g->add_option("--ids", ids_s, "prompt as comma-separated token ids");
  g->require_option(1);
  cmd->add_flag("--chat", chat, "wrap the prompt in the model's chat template (user turn + assistant header)");
  cmd->add_option("--chat-format", chat_format, "auto (from tokenizer_config/architecture), llama3, chatml or raw")
      ->capture_default_str();
  cmd->add_option("--system", system, "system message for --chat (default: the template's own default)");
  cmd->add_option("--max-tokens", max_tokens, "maximum tokens to generate")->capture_default_str();
  cmd->add_flag("--greedy", greedy, "argmax decoding (the default unless --temperature > 0)");
  cmd->add_option("--temperature", temperature, "sampling temperature (> 0 enables sampling)");
  cmd->add_option("--top-p", top_p, "nucleus sampling mass")->capture_default_str();
  cmd->add_option("--seed", seed, "sampling seed")->capture_default_str();
  cmd->add_option("--stop", stops, "stop string (repeatable)");
  cmd->add_option("--precision", prec_s, kPrecisionHelp)->capture_default_str();
  cmd->add_flag("--json", as_json, "print {\"ids\": [...], \"text\": \"...\"} for the generated part");
  add_threads_option(cmd, &threads);
  cmd->callback([] {
    apply_threads(threads);
    const Precision p = parse_precision(prec_s);
    LQ_CHECK(!(greedy && temperature > 0), "--greedy and --temperature > 0 contradict each other");
    auto m = Model::load(dir);
    std::unique_ptr<Tokenizer> tok;
    if (has_tokenizer(dir)) tok = std::make_unique<Tokenizer>(Tokenizer::load(dir));
    std::vector<int32_t> ids;
    if (!ids_s.empty()) {
      LQ_CHECK(!chat, "--chat needs a text prompt (--prompt or --prompt-file), not --ids");
      ids = parse_id_list(ids_s, "--ids");
    } else {
      LQ_CHECK(tok, "{}: no tokenizer.json; give the prompt as --ids", dir);
      std::string text = prompt_file.empty() ? prompt : read_file(prompt_file);
      if (chat) {
        ChatFormat f = chat_format == "auto" ? detect_chat_format(dir, m->config().architecture)
                                             : parse_chat_format(chat_format);
        std::vector<ChatMessage> msgs;
        if (!system.empty()) msgs.push_back({"system", system});
        msgs.push_back({"user", text});
        ids = tok->encode(render_chat(f, msgs, true), false);
      } else {
        ids = tok->encode(text, true);
      }
    }
    GenerateOptions go;
    go.max_tokens = max_tokens;
    go.sampling.greedy = !(temperature > 0);
    go.sampling.temperature = temperature > 0 ? temperature : 1.0f;
    go.sampling.top_p = top_p;
    go.sampling.seed = seed;
    for (auto e : m->config().eos_token_ids) go.eos_ids.push_back(int32_t(e));
    if (tok) for (auto e : tok->eos_ids()) go.eos_ids.push_back(e);
    go.stop_strings = stops;
    if (tok) go.detokenize = [&](const std::vector<int32_t>& v) { return tok->decode(v, true); };
    std::unique_ptr<StreamDecoder> stream;
    if (!as_json && tok) {
      stream = std::make_unique<StreamDecoder>(*tok, true);
      go.on_token = [&](int32_t id) {
        std::string piece = stream->push(id);
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      };
    } else if (!as_json) {
      go.on_token = [](int32_t id) { std::printf("%d ", id); std::fflush(stdout); };
    }
    Progress prog("prefill", int64_t(ids.size()), "tok");
    auto s = make_session(*m, int64_t(ids.size()) + max_tokens, p, &prog);
    auto r = generate(*s, ids, go);
    prog.finish();
    std::string text;
    if (tok) {
      text = tok->decode(r.ids, true);
      if (r.stop_reason == "stop_string") {
        size_t cut = std::string::npos;
        for (auto& st : stops) cut = std::min(cut, text.find(st));
        if (cut != std::string::npos) text.resize(cut);
      }
    }
    if (as_json) {
      print_json(json{{"ids", r.ids}, {"text", text}, {"stop_reason", r.stop_reason},
                      {"prompt_tokens", r.prompt_tokens}, {"logprobs", r.logprobs}});
      return;
    }
    if (stream) { auto rest = stream->flush(); std::fwrite(rest.data(), 1, rest.size(), stdout); }
    std::printf("\n");
    std::fprintf(stderr, "[%lld prompt tokens in %.2fs, %zu generated at %.2f tok/s, stop: %s]\n",
                 (long long)r.prompt_tokens, r.prefill_seconds, r.ids.size(),
                 r.decode_seconds > 0 ? double(r.ids.size()) / r.decode_seconds : 0.0, r.stop_reason.c_str());
  });
}

void cmd_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure prefill and decode speed, memory and bandwidth use");
  static std::string dir, prec_s = "bf16";
  static int64_t prompt_tokens = 512, gen_tokens = 32, chunk = 512;
  static bool as_json = false, no_probe = false, prof = false;
  static int threads = 0;
  static uint64_t seed = 1;
  cmd->add_flag("--profile", prof, "report wall time per operation (prefill and decode separately)");
  cmd->add_option("--model", dir, "Hugging Face model directory")->required();
  cmd->add_option("--prompt-tokens", prompt_tokens, "prompt length (random ids)")->capture_default_str();
  cmd->add_option("--gen-tokens", gen_tokens, "tokens to decode")->capture_default_str();
  cmd->add_option("--precision", prec_s, kPrecisionHelp)->capture_default_str();
  cmd->add_option("--chunk", chunk, "prefill chunk size")->capture_default_str();
  cmd->add_option("--seed", seed, "seed of the random prompt")->capture_default_str();
  cmd->add_flag("--no-bandwidth-probe", no_probe, "skip the memory bandwidth measurement");
  cmd->add_flag("--json", as_json, "print JSON");
  add_threads_option(cmd, &threads);
  cmd->callback([] {
    apply_threads(threads);
    const Precision p = parse_precision(prec_s);
    LQ_CHECK(prompt_tokens >= 1, "--prompt-tokens must be >= 1");
    LQ_CHECK(gen_tokens >= 0, "--gen-tokens must be >= 0");
    LQ_CHECK(chunk >= 1, "--chunk must be >= 1, got {}", chunk);
    auto m = Model::load(dir);
    const ModelConfig& c = m->config();
    Rng rng(seed);
    std::vector<int32_t> ids(static_cast<size_t>(prompt_tokens));
    for (auto& x : ids) x = int32_t(rng.below(uint64_t(std::min<int64_t>(c.vocab_size, 32000))));
    SessionOptions so;
    so.precision = p;
    so.chunk_size = chunk;
    so.capacity = prompt_tokens + gen_tokens + 1;
    LQ_CHECK(so.capacity <= c.max_position_embeddings, "prompt + generated tokens ({}) exceed the context ({})",
             so.capacity, c.max_position_embeddings);
    using clock = std::chrono::steady_clock;
    // Warm-up: page the weights in, build the GEMM primitives and size the
    // per-thread scratch (activations, packed operands) for a full chunk, as a
    // long-running process finds them after its first request: one chunk-sized
    // forward and one decode step, on the session the timed run then reuses
    // (reset), as the native backend reuses one session across requests. (Else
    // the first chunk pays 10-130 ms more on the 1B model for faulting in fresh
    // scratch and KV-cache pages; not a property of the forward.)
    Session s(*m, so);
    {
      const int64_t wn = std::min<int64_t>(prompt_tokens, chunk);
      std::vector<int32_t> wid(ids.begin(), ids.begin() + wn);
      s.forward(wid, 1);
      std::vector<int32_t> one{wid.back()};
      if (s.position() < s.capacity()) s.forward(one, 1);
      s.reset();
    }
    Progress prog("prefill", prompt_tokens, "tok");
    s.set_progress([&](int64_t d, int64_t t) { prog.update(d); });
    profile::set_enabled(prof);
    profile::reset();
    auto t0 = clock::now();
    auto logits = s.forward(ids, 1);
    const double prefill_s = std::chrono::duration<double>(clock::now() - t0).count();
    prog.finish();
    auto prefill_profile = profile::snapshot();
    profile::reset();
    int32_t next = argmax(logits.data(), c.vocab_size);
    auto t1 = clock::now();
    for (int64_t i = 0; i < gen_tokens; ++i) {
      logits = s.forward(std::span<const int32_t>(&next, 1), 1);
      next = argmax(logits.data(), c.vocab_size);
    }
    const double decode_s = std::chrono::duration<double>(clock::now() - t1).count();
    auto decode_profile = profile::snapshot();
    profile::set_enabled(false);
    const int64_t rss = peak_rss_bytes();  // before the probe allocates its buffer
    const double bw = no_probe ? 0.0 : cpu::measure_read_bandwidth();
    const double prefill_tps = double(prompt_tokens) / prefill_s;
    const double decode_tps = gen_tokens > 0 ? double(gen_tokens) / decode_s : 0.0;
    // Bytes a decode step must read: every weight once plus the KV cache so far
    // (mean context over the decoded tokens).
    const double mean_ctx = double(prompt_tokens) + double(gen_tokens) / 2.0;
    const double step_bytes = double(m->decode_weight_bytes()) + mean_ctx * double(m->kv_bytes_per_token(p));
    const double bound = bw > 0 ? bw / step_bytes : 0.0;
    json j = {{"model", dir},
              {"precision", std::string(precision_name(p))},
              {"threads", num_threads()},
              {"cpu", cpu_model_name()},
              {"prompt_tokens", prompt_tokens},
              {"gen_tokens", gen_tokens},
              {"prefill_seconds", prefill_s},
              {"prefill_tok_s", prefill_tps},
              {"decode_seconds", decode_s},
              {"decode_tok_s", decode_tps},
              {"peak_rss_bytes", rss},
              {"weights_bytes", m->weight_bytes()},
              {"kv_bytes", s.kv_bytes()},
              {"decode_bytes_per_token", step_bytes},
              {"mem_bandwidth_bytes_s", bw},
              {"decode_bound_tok_s", bound},
              {"decode_fraction_of_bound", bound > 0 ? decode_tps / bound : 0.0}};
    if (prof) {
      j["profile_prefill_seconds"] = prefill_profile;
      j["profile_decode_seconds"] = decode_profile;
    }
    if (as_json) { print_json(j, true); return; }
    if (prof) {
      auto show = [](const char* what, const std::map<std::string, double>& t, double total) {
        std::printf("%s profile (%.3fs):\n", what, total);
        for (auto& [k, v] : t) std::printf("  %-16s %8.3fs  %5.1f%%\n", k.c_str(), v, 100 * v / total);
      };
      show("prefill", prefill_profile, prefill_s);
      show("decode", decode_profile, decode_s);
    }
    std::printf("prefill  %lld tokens in %.2fs: %.1f tok/s\n", (long long)prompt_tokens, prefill_s, prefill_tps);
    std::printf("decode   %lld tokens in %.2fs: %.2f tok/s", (long long)gen_tokens, decode_s, decode_tps);
    if (bound > 0) std::printf(" (%.0f%% of the %.2f tok/s bandwidth bound)", 100 * decode_tps / bound, bound);
    std::printf("\nmemory   peak RSS %.1f MiB (weights %.1f MiB, KV cache %.1f MiB)\n", double(rss) / 1048576,
                double(m->weight_bytes()) / 1048576, double(s.kv_bytes()) / 1048576);
    if (bw > 0) std::printf("machine  %.1f GB/s read bandwidth, %d threads, %s\n", bw / 1e9, num_threads(), cpu_model_name().c_str());
  });
}

void cmd_synth(CLI::App& app) {
  auto* cmd = app.add_subcommand("synth", "Write a random-weight checkpoint with a real model's shapes");
  static std::string like, out;
  static uint64_t seed = 0;
  static int64_t layers = 0;
  static int threads = 0;
  std::string names;
  for (auto& n : synth_preset_names()) names += (names.empty() ? "" : ", ") + n;
  cmd->add_option("--like", like, "model shape: " + names)->required();
  cmd->add_option("--out", out, "output directory")->required();
  cmd->add_option("--seed", seed, "weight seed")->capture_default_str();
  cmd->add_option("--layers", layers, "number of decoder layers (default: the real model's)");
  add_threads_option(cmd, &threads);
  cmd->callback([] {
    apply_threads(threads);
    Progress prog("synth " + like, 0, "MiB");
    SynthOptions o;
    o.like = like;
    o.out_dir = out;
    o.seed = seed;
    o.layers = layers;
    o.progress = [&](int64_t done, int64_t total) { prog.set_total(total >> 20); prog.update(done >> 20); };
    ModelConfig c = synth_checkpoint(o);
    prog.finish();
    std::fprintf(stderr, "wrote %s: %s, %lld layers, hidden %lld\n", out.c_str(), c.architecture.c_str(),
                 (long long)c.num_layers, (long long)c.hidden_size);
  });
}

}  // namespace

void register_engine_commands(CLI::App& app) {
  cmd_info(app);
  cmd_tokenize(app);
  cmd_logits(app);
  cmd_generate(app);
  cmd_bench(app);
  cmd_synth(app);
}

}  // namespace lq::cli
