// longquant: what does quantization do to a model's ability to use long contexts?
// Command-line entry point: every command lives in a register_*_commands().
#include <cstdio>
#include <exception>

#include "core/version.h"
#include "cli/common.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{
      "longquant: quantize LLMs, run them at long context, and measure what quantization costs.\n"
      "Run 'longquant COMMAND --help' for a command's options."};
  app.set_version_flag("--version", std::string(LQ_VERSION) + " (" + lq::git_hash() + ")");
  app.require_subcommand(1);
  lq::cli::register_engine_commands(app);
  lq::cli::register_quant_commands(app);
  lq::cli::register_tasks_commands(app);
  lq::cli::register_eval_commands(app);
  lq::cli::register_results_commands(app);
  lq::cli::register_serve_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const lq::Error& e) {
    std::fprintf(stderr, "longquant: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "longquant: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "longquant: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
