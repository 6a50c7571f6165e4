// model/synth.h: random-weight Hugging Face checkpoints with real models' shapes.
//
// For benchmarks and tests of shapes we cannot download: `longquant synth
// --like llama-3.2-1b --out DIR` writes config.json (the real model's config),
// generation_config.json, model.safetensors (bf16, seeded) and a byte-level
// tokenizer.json (256 byte tokens + the real special tokens at their real ids)
// so text prompts work end to end.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/hf_config.h"

namespace lq {

struct SynthPreset {
  std::string name;
  std::string config_json;  // the model's config.json
};

// Names accepted by --like.
std::vector<std::string> synth_preset_names();

struct SynthOptions {
  std::string like;
  std::string out_dir;
  uint64_t seed = 0;
  int64_t layers = 0;  // 0 = the real number
  // Progress: (bytes written, total bytes).
  std::function<void(int64_t, int64_t)> progress;
};

// Writes the checkpoint; returns its config. Throws lq::Error on unknown preset or I/O errors.
ModelConfig synth_checkpoint(const SynthOptions& o);

}  // namespace lq
