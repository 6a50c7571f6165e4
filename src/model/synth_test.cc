// synth: random checkpoints with real configs load and run; same seed, same bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

#include "core/testing.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/threads.h"
#include "io/safetensors.h"
#include "io/tokenizer.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/synth.h"

namespace lq {
namespace {

std::string temp_dir() {
  return lq::testing::temp_dir("lq_synth_");
}

SynthOptions synth_options(const std::string& like, int64_t layers, const std::string& dir, uint64_t seed = 0) {
  SynthOptions o;
  o.like = like;
  o.layers = layers;
  o.seed = seed;
  o.out_dir = dir;
  return o;
}

TEST(Synth, TinyLlamaLoadsRunsAndIsReproducible) {
  const std::string a = temp_dir(), b = temp_dir();
  SynthOptions o = synth_options("tiny-llama", 1, a, 7);
  ModelConfig c = synth_checkpoint(o);
  EXPECT_EQ(c.num_layers, 1);
  o.out_dir = b;
  synth_checkpoint(o);
  EXPECT_EQ(read_file(a + "/model.safetensors"), read_file(b + "/model.safetensors"));

  auto m = Model::load(a);
  EXPECT_EQ(m->config().hidden_size, 256);
  SessionOptions so;
  so.capacity = 64;
  Session s(*m, so);
  Tokenizer tok = Tokenizer::load(a);
  auto ids = tok.encode("hello", true);
  ASSERT_EQ(ids.size(), 6u);  // <|begin_of_text|> + 5 byte tokens
  EXPECT_EQ(ids[0], 128000);
  EXPECT_EQ(tok.decode(ids, true), "hello");
  GenerateOptions go;
  go.max_tokens = 4;
  auto r = generate(s, ids, go);
  EXPECT_EQ(r.ids.size(), 4u);
}

// Model::load copies bf16 weights into process memory by default (64-byte aligned,
// not inside the mapped file) and can leave them mapped (WeightStorage::Mapped:
// the layer reads the file's bytes in place); both give bitwise the same logits
// in both precisions, for a prefill chunk (GEMM paths) and a decode step (GEMV).
TEST(Synth, ResidentAndMappedWeightsGiveIdenticalLogits) {
  const std::string a = temp_dir();
  synth_checkpoint(synth_options("tiny-llama", 2, a, 11));
  auto res = Model::load(a);
  auto map = Model::load(a, WeightStorage::Mapped);
  SafeTensors st = SafeTensors::open(a);
  const auto* rq = dynamic_cast<const Bf16Linear*>(res->layer(1).down.get());
  const auto* mq = dynamic_cast<const Bf16Linear*>(map->layer(1).down.get());
  ASSERT_TRUE(rq != nullptr && mq != nullptr);
  const uint8_t* mapped = st.get("model.layers.1.mlp.down_proj.weight").data;
  // Where the bytes live, from /proc/self/maps: resident in anonymous memory, or
  // (Mapped) inside a mapping of model.safetensors.
  auto in_checkpoint_mapping = [](const void* p) {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    const auto a = reinterpret_cast<uintptr_t>(p);
    while (std::getline(maps, line)) {
      unsigned long b = 0, e = 0;
      if (std::sscanf(line.c_str(), "%lx-%lx", &b, &e) == 2 && a >= b && a < e)
        return line.find("model.safetensors") != std::string::npos;
    }
    return false;
  };
  EXPECT_FALSE(in_checkpoint_mapping(rq->data()));
  EXPECT_TRUE(in_checkpoint_mapping(mq->data()));
  EXPECT_FALSE(in_checkpoint_mapping(res->embed_bf16()));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(rq->data()) % 64, 0u);
  EXPECT_EQ(std::memcmp(rq->data(), mapped, size_t(rq->in_features() * rq->out_features() * 2)), 0);
  EXPECT_EQ(std::memcmp(mq->data(), mapped, size_t(mq->in_features() * mq->out_features() * 2)), 0);
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < 40; ++i) ids.push_back(3 * i + 1);
  for (Precision p : {Precision::BF16, Precision::F32}) {
    SessionOptions so;
    so.capacity = 64;
    so.precision = p;
    Session sr(*res, so), sm(*map, so);
    std::vector<float> lr = sr.forward(ids, 2), lm = sm.forward(ids, 2);
    ASSERT_EQ(lr.size(), lm.size());
    EXPECT_EQ(std::memcmp(lr.data(), lm.data(), lr.size() * 4), 0) << "prefill, precision " << int(p);
    const int32_t next[1] = {7};
    lr = sr.forward(next, 1);
    lm = sm.forward(next, 1);
    EXPECT_EQ(std::memcmp(lr.data(), lm.data(), lr.size() * 4), 0) << "decode, precision " << int(p);
  }
}

TEST(Synth, QwenShapeHasBiasesAndDifferentSeedsDiffer) {
  const std::string a = temp_dir();
  ModelConfig c = synth_checkpoint(synth_options("qwen2.5-0.5b", 1, a));
  EXPECT_EQ(c.arch, Arch::Qwen2);
  EXPECT_TRUE(c.attention_bias);
  auto m = Model::load(a);
  EXPECT_EQ(m->config().num_kv_heads, 2);
  EXPECT_THROW(synth_checkpoint(synth_options("no-such-model", 1, a)), Error);
}

}  // namespace
}  // namespace lq

namespace lq {
namespace {
// Layers load in parallel; a checkpoint with tensors missing from several layers must
// still name the first one (as a sequential load would), whatever the thread count.
TEST(Synth, LoadErrorNamesTheFirstBrokenLayer) {
  const std::string a = temp_dir();
  synth_checkpoint(synth_options("tiny-llama", 4, a));
  // Rewrite the checkpoint without layer 1's and layer 3's o_proj.
  std::vector<TensorToWrite> keep;
  {
    SafeTensors st = SafeTensors::open(a);
    std::vector<std::string> drop = {"model.layers.1.self_attn.o_proj.weight", "model.layers.3.self_attn.o_proj.weight"};
    std::vector<std::vector<uint8_t>> bytes;
    for (const std::string& n : st.names()) {
      if (std::find(drop.begin(), drop.end(), n) != drop.end()) continue;
      const TensorInfo& t = st.get(n);
      bytes.emplace_back(t.data, t.data + t.nbytes);
      keep.push_back({n, t.dtype, t.shape, nullptr});
    }
    for (size_t i = 0; i < keep.size(); ++i) keep[i].data = bytes[i].data();
    write_safetensors(a + "/model.safetensors.tmp", keep);
  }
  std::rename((a + "/model.safetensors.tmp").c_str(), (a + "/model.safetensors").c_str());
  for (int threads : {1, 2, 4}) {
    const int t = num_threads();
    set_num_threads(threads);
    try {
      Model::load(a);
      ADD_FAILURE() << "loaded a checkpoint with missing tensors";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.o_proj"), std::string::npos) << e.what();
    }
    set_num_threads(t);
  }
}
}  // namespace
}  // namespace lq
