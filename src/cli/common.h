// cli/common.h: helpers shared by the CLI's commands.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lq::cli {

// Adds -t/--threads to a subcommand (0 = all hardware threads).
void add_threads_option(CLI::App* cmd, int* threads);
// Applies it (call at the start of the command's callback).
void apply_threads(int threads);

// "5,6,7" or "[5, 6, 7]" -> ids; throws lq::Error naming the flag on bad input.
std::vector<int32_t> parse_id_list(const std::string& s, const std::string& flag);

// Print JSON on stdout (one line, or indented when pretty).
void print_json(const nlohmann::json& j, bool pretty = false);

// Peak resident set size of this process, bytes.
int64_t peak_rss_bytes();
// Current resident set size of this process, bytes.
int64_t current_rss_bytes();

void register_engine_commands(CLI::App& app);   // info tokenize logits generate bench synth
void register_quant_commands(CLI::App& app);    // quantize divergence
void register_tasks_commands(CLI::App& app);    // tasks list|generate|score
void register_eval_commands(CLI::App& app);     // eval
void register_results_commands(CLI::App& app);  // results, report
void register_serve_commands(CLI::App& app);    // serve

}  // namespace lq::cli
