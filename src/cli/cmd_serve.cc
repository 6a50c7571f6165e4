// cli/cmd_serve.cc: `longquant serve`, the engine behind an OpenAI-compatible HTTP API.
//
// Thin: options -> lq::Server (src/serve/server.h). Signals: SIGINT and SIGTERM
// are blocked in every thread (set before any thread starts, so the engine,
// OpenMP and HTTP threads inherit the mask) and received by one thread with
// sigtimedwait, which calls Server::stop() -- no work happens in a signal handler.
// The command then returns normally: exit code 0 after a graceful shutdown.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <thread>

#include "cli/common.h"
#include "core/error.h"
#include "serve/server.h"

namespace lq::cli {

namespace {

void cmd_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve", "Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions)");
  static ServeOptions o;
  static std::string prec_s = "bf16";
  static int max_queue = 512;
  cmd->add_option("--model", o.engine.model_dir, "Hugging Face model directory (BF16 or quantized)")->required();
  cmd->add_option("--host", o.host, "address to bind (loopback unless told otherwise; 0.0.0.0 for all)")
      ->capture_default_str();
  cmd->add_option("--port", o.port, "TCP port (0 = any free port; the chosen one is printed)")->capture_default_str();
  add_threads_option(cmd, &o.engine.threads);
  cmd->add_option("--max-context", o.engine.max_context,
                  "tokens per request, prompt + generated (0 = the model's max_position_embeddings)")
      ->capture_default_str();
  cmd->add_option("--precision", prec_s, "numerics: bf16 (default) or fp32 (exact mode)")->capture_default_str();
  cmd->add_option("--chat-format", o.engine.chat_format, "chat template: auto (from tokenizer_config/architecture), "
                                                  "llama3, chatml or raw")
      ->capture_default_str();
  cmd->add_option("--served-name", o.served_name, "model name clients send in \"model\" (default: the directory's name)");
  cmd->add_option("--max-queue", max_queue, "requests allowed to wait for the engine; more get HTTP 503")
      ->capture_default_str();
  cmd->add_option("--http-threads", o.http_threads, "connections served at once (HTTP worker threads)")
      ->capture_default_str();
  cmd->add_option("--chunk", o.engine.chunk_size, "prefill chunk size (tokens per forward step)")->capture_default_str();
  cmd->callback([] {
    apply_threads(o.engine.threads);
    o.engine.precision = parse_precision(prec_s);
    LQ_CHECK(max_queue >= 1, "--max-queue must be >= 1, got {}", max_queue);
    o.engine.max_queue = size_t(max_queue);

    // Block the stop signals before any thread exists (threads inherit the mask).
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, nullptr);

    Server server(o);
    std::atomic<bool> done{false};
    std::thread waiter([&] {
      const timespec tick{0, 200'000'000};
      while (!done) {
        const int sig = sigtimedwait(&stop_set, nullptr, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
          std::fprintf(stderr, "longquant serve: %s received, finishing the request in flight and stopping\n",
                       sig == SIGINT ? "SIGINT" : "SIGTERM");
          server.stop();
          return;
        }
      }
    });
    const auto& c = server.engine().config();
    std::fprintf(stderr, "longquant serve: model '%s' (%s, %s), context %lld tokens, %s\n",
                 server.model_name().c_str(), c.architecture.c_str(), std::string(precision_name(o.engine.precision)).c_str(),
                 static_cast<long long>(server.engine().max_context()),
                 server.engine().tokenizer() ? "text and token-id prompts" : "token-id prompts only (no tokenizer.json)");
    const bool v6 = o.host.find(':') != std::string::npos;
    std::printf("listening on http://%s%s%s:%d\n", v6 ? "[" : "", o.host.c_str(), v6 ? "]" : "", server.port());
    std::fflush(stdout);
    try {
      server.run();
    } catch (...) {
      done = true;
      waiter.join();
      throw;
    }
    done = true;
    waiter.join();
    std::fprintf(stderr, "longquant serve: stopped\n");
  });
}

}  // namespace

void register_serve_commands(CLI::App& app) { cmd_serve(app); }

}  // namespace lq::cli
