// quant/calib.h: calibration token sequences for GPTQ / AWQ.
//
// Sources, in order of preference:
//   * --calib FILE: plain text (documents separated by blank lines) or JSONL with a
//     "text" field per line (.jsonl / .json extension, or a first line starting with '{');
//   * the built-in default: a set of original paragraphs written for longquant in the
//     languages and registers of the study (English narrative, technical and dialogue
//     prose; German, French, Spanish, Portuguese, Italian, Polish, Russian, Chinese,
//     Japanese, Korean, Hindi, Arabic; source code; numbers and lists). It needs no
//     download, it is natural text (so activations have the statistics real prompts
//     have, unlike random tokens), and it covers the scripts whose tokens the study
//     measures. It is small (~16 KB), so samples reuse it: each sample is the paragraphs
//     in a different seeded order starting at a random token, which varies the
//     contexts the attention layers see;
//   * a model directory without tokenizer.json: seeded uniformly random token ids
//     (the result's `source` says "random-tokens").
// Each sample is `len` tokens: the tokenizer's special prefix (e.g. Llama-3's
// <|begin_of_text|>) and then a window of the shuffled, concatenated documents.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lq::quant {

struct CalibOptions {
  std::string file;       // "" = built-in
  int64_t samples = 32;
  int64_t len = 512;
  uint64_t seed = 0;
};

struct CalibData {
  std::vector<std::vector<int32_t>> seqs;  // samples x len
  std::string source;                      // "builtin" | "file" | "random-tokens"
  std::string description;                 // one line for logs and the output config
  int64_t corpus_tokens = 0;               // tokens in the (tokenized) corpus, 0 for random
};

// Builds the calibration set for a model directory (tokenizer.json, if present, is read
// from it). Throws lq::Error naming the file for unreadable or empty corpora.
CalibData make_calibration(const std::string& model_dir, int64_t vocab_size, int64_t bos_token_id,
                           const CalibOptions& o);

// The built-in paragraphs.
const std::vector<std::string>& builtin_calibration_text();

// Documents of a calibration file (text split at blank lines, or JSONL "text" fields).
std::vector<std::string> read_calibration_file(const std::string& path);

}  // namespace lq::quant
