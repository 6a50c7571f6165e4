// Tests of the quantized checkpoint layouts (quant/checkpoint.h):
//  * hand-built tensors in each published layout decode to the expected values
//    (packing order, GPTQ v1 'zero minus one' vs v2, AWQ interleave, g_idx,
//    compressed-tensors offset binary, bnb high nibble first and double quant,
//    FP8 scale shapes/dtypes); packed words are written as literals;
//  * writer -> reader gives bit-identical dequantized weights for every format;
//  * config errors name config.json and the field;
//  * end to end on the tiny-llama31 fixture: every linear layer RTN-quantized in
//    each format (simple rounding implemented here), written, loaded back through
//    load_linear and run; F32 outputs match a float64 product with the weights as
//    written (tolerance 1e-5 of sum |x w|, see qlinear_test.cc; the issue's
//    2e-3 / 2e-2 apply to whole-model logits).
#include "quant/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "core/testing.h"
#include "quant/affine.h"
#include "quant/fp8.h"
#include "quant/nf4.h"
#include "quant/qlinear.h"

namespace lq::quant {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string temp_dir(const std::string& name) {
  return lq::testing::temp_dir("lq_ckpt_" + name + "_");
}

// A tensor built in the test.
struct T {
  std::string name;
  DType dt;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
template <typename V>
T mk(std::string name, DType dt, std::vector<int64_t> shape, const std::vector<V>& v) {
  T t{std::move(name), dt, std::move(shape), {}};
  t.bytes.resize(v.size() * sizeof(V));
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}
std::vector<uint16_t> f16s(std::vector<float> v) {
  std::vector<uint16_t> r;
  for (float x : v) r.push_back(f32_to_f16(x));
  return r;
}
std::vector<uint16_t> bf16s(std::vector<float> v) {
  std::vector<uint16_t> r;
  for (float x : v) r.push_back(f32_to_bf16(x));
  return r;
}

SafeTensors write_st(const std::string& dir, const std::vector<T>& ts) {
  std::vector<TensorToWrite> w;
  for (const T& t : ts) w.push_back({t.name, t.dt, t.shape, t.bytes.data()});
  write_safetensors(dir + "/model.safetensors", w);
  return SafeTensors::open(dir);
}

// ---- hand-built layouts ---------------------------------------------------------

TEST(CheckpointLayouts, GptqV1V2AndActOrder) {
  // N = 8 outputs, K = 8 inputs, 4-bit, group_size 4, act-order g_idx.
  // qweight [1, 8]: column n holds q[n][k] = (n + k) % 16 in nibble k (LSB first).
  std::vector<uint32_t> qw = {0x76543210u, 0x87654321u, 0x98765432u, 0xA9876543u,
                              0xBA987654u, 0xCBA98765u, 0xDCBA9876u, 0xEDCBA987u};
  // qzeros [2, 1]: nibble n of group g holds the stored zero (g + n).
  std::vector<uint32_t> qz = {0x76543210u, 0x87654321u};
  std::vector<float> sc;
  for (int g = 0; g < 2; ++g)
    for (int n = 0; n < 8; ++n) sc.push_back(0.5f * float(g + 1) + 0.25f * float(n));
  std::vector<int32_t> gidx = {1, 0, 1, 0, 0, 1, 1, 0};
  const std::string dir = temp_dir("gptq");
  SafeTensors st = write_st(dir, {mk("l.qweight", DType::I32, {1, 8}, qw), mk("l.qzeros", DType::I32, {2, 1}, qz),
                                  mk("l.scales", DType::F16, {2, 8}, f16s(sc)), mk("l.g_idx", DType::I32, {8}, gidx)});
  for (bool v2 : {false, true}) {
    json qc = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 4}, {"desc_act", true}, {"sym", false}};
    if (v2) qc["checkpoint_format"] = "gptq_v2";
    const QuantScheme s = parse_quant_scheme(qc, "x/config.json");
    EXPECT_EQ(stored_family(st, s, "l"), WeightFamily::Affine);
    const AffineGroups w = read_affine(st, s, "l", 8, 8);
    const std::vector<float> d = dequantize(w);
    for (int n = 0; n < 8; ++n)
      for (int k = 0; k < 8; ++k) {
        const int g = gidx[size_t(k)];
        const float z = float(g + n) + (v2 ? 0.0f : 1.0f);  // v1: stored zero + 1
        EXPECT_EQ(d[size_t(n * 8 + k)], sc[size_t(g * 8 + n)] * (float((n + k) % 16) - z)) << n << "," << k;
      }
  }
  // 8-bit: four codes per word, byte i = code of k = 4r + i.
  const std::string dir8 = temp_dir("gptq8");
  // qweight [K/4 = 2, N = 4]; outputs 2 and 3 repeat outputs 0 and 1.
  std::vector<uint32_t> qw8 = {0x04030201u, 0x40302010u, 0x04030201u, 0x40302010u,
                               0x08070605u, 0x80706050u, 0x08070605u, 0x80706050u};
  SafeTensors st8 = write_st(dir8, {mk("l.qweight", DType::I32, {2, 4}, qw8),
                                    mk("l.qzeros", DType::I32, {1, 1}, std::vector<uint32_t>{0x7F7F7F7Fu}),
                                    mk("l.scales", DType::F16, {1, 4}, f16s({1.0f, 0.5f, 1.0f, 0.5f}))});
  const QuantScheme s8 = parse_quant_scheme(json{{"quant_method", "gptq"}, {"bits", 8}, {"group_size", -1}}, "c");
  const std::vector<float> d8 = dequantize(read_affine(st8, s8, "l", 4, 8));
  // Row 0 codes 1..8, zero 0x7F + 1 = 128; row 1 codes 0x10..0x80, zero 128, scale 0.5.
  for (int k = 0; k < 8; ++k) {
    EXPECT_EQ(d8[size_t(k)], float(k + 1) - 128.0f) << k;
    EXPECT_EQ(d8[size_t(8 + k)], 0.5f * (float(16 * (k + 1)) - 128.0f)) << k;
  }
}

TEST(CheckpointLayouts, AwqInterleavedNibbles) {
  // N = 8, K = 2, group 2. Word 0x76543210 at k = 0: nibble i holds column
  // order[i] = {0,2,4,6,1,3,5,7}[i], so columns 0..7 get 0,4,1,5,2,6,3,7.
  const std::string dir = temp_dir("awq");
  SafeTensors st = write_st(dir, {mk("l.qweight", DType::I32, {2, 1}, std::vector<uint32_t>{0x76543210u, 0xFFFFFFFFu}),
                                  mk("l.qzeros", DType::I32, {1, 1}, std::vector<uint32_t>{0x00000021u}),
                                  mk("l.scales", DType::F16, {1, 8}, f16s({1, 1, 1, 1, 1, 1, 1, 2}))});
  const QuantScheme s = parse_quant_scheme(
      json{{"quant_method", "awq"}, {"bits", 4}, {"group_size", 2}, {"version", "gemm"}, {"zero_point", true}}, "c");
  const std::vector<float> d = dequantize(read_affine(st, s, "l", 8, 2));
  // qzeros nibble 0 (column 0) = 1, nibble 1 (column 2) = 2, others 0; no offset.
  const int want_q[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  const int want_z[8] = {1, 0, 2, 0, 0, 0, 0, 0};
  for (int n = 0; n < 8; ++n) {
    const float s_n = n == 7 ? 2.0f : 1.0f;
    EXPECT_EQ(d[size_t(n * 2 + 0)], s_n * float(want_q[n] - want_z[n])) << n;
    EXPECT_EQ(d[size_t(n * 2 + 1)], s_n * float(15 - want_z[n])) << n;
  }
}

TEST(CheckpointLayouts, CompressedTensorsPackQuantized) {
  // N = 2, K = 8, 4-bit offset binary packed along K; channel scales in bf16.
  const std::string dir = temp_dir("ctpack");
  json qc = {{"quant_method", "compressed-tensors"},
             {"format", "pack-quantized"},
             {"config_groups",
              {{"group_0",
                {{"targets", {"Linear"}},
                 {"weights", {{"num_bits", 4}, {"type", "int"}, {"strategy", "channel"}, {"symmetric", true}}}}}}}};
  SafeTensors st = write_st(dir, {mk("l.weight_packed", DType::I32, {2, 1}, std::vector<uint32_t>{0x76543210u, 0xFEDCBA98u}),
                                  mk("l.weight_scale", DType::BF16, {2, 1}, bf16s({0.5f, 2.0f})),
                                  mk("l.weight_shape", DType::I64, {2}, std::vector<int64_t>{2, 8})});
  const QuantScheme s = parse_quant_scheme(qc, "c");
  const std::vector<float> d = dequantize(read_affine(st, s, "l", 2, 8));
  for (int k = 0; k < 8; ++k) {
    EXPECT_EQ(d[size_t(k)], 0.5f * float(k - 8)) << k;       // stored k = signed k - 8
    EXPECT_EQ(d[size_t(8 + k)], 2.0f * float(k)) << k;       // stored k + 8 = signed k
  }
  // Asymmetric with groups of 4, g_idx and a zero point packed along N:
  // zero word for group g: nibble n = zero of output n.
  qc["config_groups"]["group_0"]["weights"] = {{"num_bits", 4}, {"type", "int"}, {"strategy", "group"},
                                               {"group_size", 4}, {"symmetric", false}, {"actorder", "group"}};
  const std::string dir2 = temp_dir("ctpack2");
  SafeTensors st2 = write_st(dir2, {mk("l.weight_packed", DType::I32, {2, 1}, std::vector<uint32_t>{0x76543210u, 0x76543210u}),
                                    mk("l.weight_scale", DType::F32, {2, 2}, std::vector<float>{1, 2, 3, 4}),
                                    mk("l.weight_zero_point", DType::I32, {1, 2}, std::vector<uint32_t>{0x21u, 0x43u}),
                                    mk("l.weight_g_idx", DType::I32, {8}, std::vector<int32_t>{0, 1, 0, 1, 0, 1, 0, 1})});
  const std::vector<float> d2 = dequantize(read_affine(st2, parse_quant_scheme(qc, "c"), "l", 2, 8));
  for (int n = 0; n < 2; ++n)
    for (int k = 0; k < 8; ++k) {
      const int g = k % 2;
      const float z = g == 0 ? float(n == 0 ? 1 : 2) : float(n == 0 ? 3 : 4);
      const float scale = n == 0 ? (g == 0 ? 1.0f : 2.0f) : (g == 0 ? 3.0f : 4.0f);
      EXPECT_EQ(d2[size_t(n * 8 + k)], scale * (float(k) - z)) << n << "," << k;
    }
}

TEST(CheckpointLayouts, BitsandbytesNf4WithAndWithoutDoubleQuant) {
  const std::vector<float> code(kNf4Code.begin(), kNf4Code.end());
  const std::vector<uint8_t> packed = {0x0F, 0x87, 0x21, 0xE0};  // 2 x 4 weights, blocks of 4
  const std::string js = R"({"quant_type": "nf4", "blocksize": 4, "dtype": "bfloat16", "shape": [2, 4]})";
  const std::string dir = temp_dir("bnb");
  SafeTensors st = write_st(dir, {mk("l.weight", DType::U8, {4, 1}, packed),
                                  mk("l.weight.absmax", DType::F32, {2}, std::vector<float>{2.0f, 0.5f}),
                                  mk("l.weight.quant_map", DType::F32, {16}, code),
                                  mk("l.weight.quant_state.bitsandbytes__nf4", DType::U8, {int64_t(js.size())},
                                     std::vector<uint8_t>(js.begin(), js.end()))});
  const QuantScheme s = parse_quant_scheme(
      json{{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}, {"bnb_4bit_quant_type", "nf4"}}, "c");
  EXPECT_EQ(stored_family(st, s, "l"), WeightFamily::Nf4);
  const std::vector<float> d = dequantize(read_nf4(st, s, "l", 2, 4));
  EXPECT_EQ(d, (std::vector<float>{-2.0f, 2.0f, kNf4Code[8] * 2.0f, 0.0f, kNf4Code[2] * 0.5f, kNf4Code[1] * 0.5f,
                                   kNf4Code[14] * 0.5f, -0.5f}));
  // Double quant: absmax codes 255 (1.0) and 128 (smallest positive) of the map,
  // nested absmax 0.25, offset 0.125.
  const auto& dyn = bnb_dynamic_map();
  const std::string js2 = R"({"quant_type": "nf4", "blocksize": 4, "dtype": "bfloat16", "shape": [2, 4],
      "nested_blocksize": 256, "nested_offset": 0.125, "nested_dtype": "float32"})";
  const std::string dir2 = temp_dir("bnb2");
  SafeTensors st2 = write_st(dir2, {mk("l.weight", DType::U8, {4, 1}, packed),
                                    mk("l.weight.absmax", DType::U8, {2}, std::vector<uint8_t>{255, 128}),
                                    mk("l.weight.quant_map", DType::F32, {16}, code),
                                    mk("l.weight.nested_absmax", DType::F32, {1}, std::vector<float>{0.25f}),
                                    mk("l.weight.nested_quant_map", DType::F32, {256}, std::vector<float>(dyn.begin(), dyn.end())),
                                    mk("l.weight.quant_state.bitsandbytes__nf4", DType::U8, {int64_t(js2.size())},
                                       std::vector<uint8_t>(js2.begin(), js2.end()))});
  const Nf4Blocks w2 = read_nf4(st2, s, "l", 2, 4);
  ASSERT_TRUE(w2.double_quant);
  EXPECT_EQ(w2.absmax[0], 0.25f + 0.125f);
  EXPECT_EQ(w2.absmax[1], dyn[128] * 0.25f + 0.125f);
  EXPECT_EQ(dequantize(w2)[1], 0.375f);  // code 15 (1.0) * absmax
}

TEST(CheckpointLayouts, Fp8ScaleShapesAndDtypes) {
  const std::vector<uint8_t> codes = {0x38, 0x40, 0xB8, 0x01, 0x7E, 0x00};  // 1, 2, -1, 2^-9, 448, 0
  json qc = {{"quant_method", "compressed-tensors"},
             {"format", "float-quantized"},
             {"config_groups",
              {{"group_0",
                {{"targets", {"Linear"}},
                 {"weights", {{"num_bits", 8}, {"type", "float"}, {"strategy", "tensor"}}},
                 {"input_activations", {{"num_bits", 8}, {"type", "float"}, {"strategy", "token"}, {"dynamic", true}}}}}}}};
  struct Case { DType dt; std::vector<int64_t> shape; std::vector<float> v; std::string strategy; };
  for (const Case& c : std::vector<Case>{{DType::F32, {}, {0.5f}, "tensor"},
                                         {DType::BF16, {1}, {0.25f}, "tensor"},
                                         {DType::BF16, {2, 1}, {0.5f, 4.0f}, "channel"}}) {
    const std::string dir = temp_dir("fp8");
    std::vector<T> ts = {mk("l.weight", DType::F8_E4M3, {2, 3}, codes)};
    if (c.dt == DType::F32) ts.push_back(mk("l.weight_scale", c.dt, c.shape, c.v));
    else ts.push_back(mk("l.weight_scale", c.dt, c.shape, bf16s(c.v)));
    SafeTensors st = write_st(dir, ts);
    qc["config_groups"]["group_0"]["weights"]["strategy"] = c.strategy;
    const QuantScheme s = parse_quant_scheme(qc, "c");
    EXPECT_EQ(stored_family(st, s, "l"), WeightFamily::Fp8);
    const Fp8Weight w = read_fp8(st, s, "l", 2, 3);
    EXPECT_TRUE(w.w8a8);
    EXPECT_FALSE(w.input_scale.has_value());
    const std::vector<float> d = dequantize(w);
    const float s0 = c.v[0], s1 = c.v.size() > 1 ? c.v[1] : c.v[0];
    EXPECT_EQ(d, (std::vector<float>{s0, 2 * s0, -s0, 0.001953125f * s1, 448 * s1, 0.0f}));
  }
  // Static activations need input_scale.
  qc["config_groups"]["group_0"]["input_activations"] = {{"num_bits", 8}, {"type", "float"}, {"strategy", "tensor"},
                                                         {"dynamic", false}};
  const std::string dir = temp_dir("fp8s");
  SafeTensors st = write_st(dir, {mk("l.weight", DType::F8_E4M3, {2, 3}, codes),
                                  mk("l.weight_scale", DType::F32, {1}, std::vector<float>{1.0f}),
                                  mk("l.input_scale", DType::F32, {1}, std::vector<float>{0.03f})});
  qc["config_groups"]["group_0"]["weights"]["strategy"] = "tensor";
  EXPECT_EQ(read_fp8(st, parse_quant_scheme(qc, "c"), "l", 2, 3).input_scale, 0.03f);
}

TEST(CheckpointConfig, ErrorsNameConfigAndField) {
  auto msg = [](const json& qc) {
    try {
      parse_quant_scheme(qc, "/m/config.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto has = [](const std::string& m, const char* s) { return m.find(s) != std::string::npos; };
  std::string m = msg(json{{"quant_method", "hqq"}});
  EXPECT_TRUE(has(m, "/m/config.json") && has(m, "quantization_config.quant_method") && has(m, "hqq")) << m;
  m = msg(json{{"quant_method", "awq"}, {"version", "gemv"}});
  EXPECT_TRUE(has(m, "quantization_config.version")) << m;
  m = msg(json{{"quant_method", "gptq"}, {"bits", 3}});
  EXPECT_TRUE(has(m, "quantization_config.bits")) << m;
  m = msg(json{{"quant_method", "gptq"}, {"bits", 4}, {"checkpoint_format", "marlin"}});
  EXPECT_TRUE(has(m, "checkpoint_format")) << m;
  m = msg(json{{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}, {"bnb_4bit_quant_type", "fp4"}});
  EXPECT_TRUE(has(m, "bnb_4bit_quant_type")) << m;
  m = msg(json::parse(R"({"quant_method": "compressed-tensors", "format": "int-quantized",
      "config_groups": {"g": {"weights": {"num_bits": 8, "type": "int"}}}})"));
  EXPECT_TRUE(has(m, "config_groups.g.format")) << m;
  m = msg(json{{"quant_method", "fp8"}, {"weight_block_size", {128, 128}}});
  EXPECT_TRUE(has(m, "weight_block_size")) << m;
  // A missing or misshapen tensor names the tensor and the expected shape.
  const std::string dir = temp_dir("err");
  SafeTensors st = write_st(dir, {mk("l.qweight", DType::I32, {1, 8}, std::vector<uint32_t>(8))});
  const QuantScheme s = parse_quant_scheme(json{{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 8}}, "c");
  try {
    read_affine(st, s, "l", 8, 8);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "l.qzeros")) << e.what();
  }
  try {
    read_affine(st, s, "l", 8, 16);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "l.qweight") && has(e.what(), "[2, 8]")) << e.what();
  }
}

// ---- simple RTN quantizers for the round-trip tests ------------------------------

AffineGroups rtn_affine(const std::vector<float>& W, int64_t N, int64_t K, int bits, int64_t gs, bool sym,
                        CheckpointFormat f, bool act_order) {
  AffineGroups w;
  w.bits = bits;
  w.out = N;
  w.in = K;
  w.group_size = gs;
  w.sym = sym;
  if (act_order) {  // a fixed non-trivial g_idx: reversed group order
    w.g_idx.resize(size_t(K));
    const int64_t G = (K + gs - 1) / gs;
    for (int64_t k = 0; k < K; ++k) w.g_idx[size_t(k)] = int32_t(G - 1 - ((k * 7) % K) / gs);
  }
  const int64_t G = w.n_groups();
  const int qmax = (1 << bits) - 1;
  w.scales.assign(size_t(G * N), 0.0f);
  w.zeros.assign(size_t(G * N), 0.0f);
  w.q.assign(size_t(N * K), 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) {
      float lo = 0, hi = 0;
      for (int64_t k = 0; k < K; ++k)
        if (w.group_of(k) == g) {
          lo = std::min(lo, W[size_t(n * K + k)]);
          hi = std::max(hi, W[size_t(n * K + k)]);
        }
      float s, z;
      if (sym) {
        s = std::max(std::fabs(lo), std::fabs(hi)) / float((qmax + 1) / 2 - 1 + 1) + 1e-8f;
        z = float(1 << (bits - 1));
      } else {
        s = (hi - lo) / float(qmax) + 1e-8f;
        z = std::nearbyint(-lo / s);
      }
      s = stored_scale(s, f);
      w.scales[size_t(g * N + n)] = s;
      w.zeros[size_t(g * N + n)] = z;
      for (int64_t k = 0; k < K; ++k)
        if (w.group_of(k) == g)
          w.q[size_t(n * K + k)] = uint8_t(std::clamp(std::nearbyint(W[size_t(n * K + k)] / s + z), 0.0f, float(qmax)));
    }
  return w;
}

Nf4Blocks rtn_nf4(const std::vector<float>& W, int64_t N, int64_t K, bool dq) {
  Nf4Blocks w;
  w.out = N;
  w.in = K;
  w.blocksize = 64;
  const int64_t nb = N * K / 64;
  w.absmax.resize(size_t(nb));
  w.packed.assign(size_t(N * K / 2), 0);
  for (int64_t b = 0; b < nb; ++b) {
    float a = 0;
    for (int64_t i = b * 64; i < (b + 1) * 64; ++i) a = std::max(a, std::fabs(W[size_t(i)]));
    w.absmax[size_t(b)] = a;
  }
  if (dq) {  // nested: mean removed, blocks of 256, nearest code of the dynamic map
    w.double_quant = true;
    double mean = 0;
    for (float a : w.absmax) mean += a;
    w.offset = float(mean / double(nb));
    const auto& dyn = bnb_dynamic_map();
    w.absmax_q.resize(size_t(nb));
    for (int64_t b0 = 0; b0 < nb; b0 += 256) {
      float m = 1e-12f;
      for (int64_t b = b0; b < std::min(nb, b0 + 256); ++b) m = std::max(m, std::fabs(w.absmax[size_t(b)] - w.offset));
      w.nested_absmax.push_back(m);
      for (int64_t b = b0; b < std::min(nb, b0 + 256); ++b) {
        const float x = (w.absmax[size_t(b)] - w.offset) / m;
        int best = 0;
        for (int c = 1; c < 256; ++c)
          if (std::fabs(dyn[size_t(c)] - x) < std::fabs(dyn[size_t(best)] - x)) best = c;
        w.absmax_q[size_t(b)] = uint8_t(best);
      }
    }
    nf4_decode_absmax(w, dyn);
  }
  for (int64_t i = 0; i < N * K; ++i) {
    const float a = w.absmax[size_t(i / 64)];
    const uint8_t c = nf4_nearest(a != 0 ? W[size_t(i)] / a : 0.0f);
    w.packed[size_t(i / 2)] |= uint8_t((i & 1) ? c : c << 4);
  }
  return w;
}

Fp8Weight rtn_fp8(const std::vector<float>& W, int64_t N, int64_t K, bool per_channel, bool static_act) {
  Fp8Weight w;
  w.out = N;
  w.in = K;
  w.per_channel = per_channel;
  float all = 0;
  for (float x : W) all = std::max(all, std::fabs(x));
  for (int64_t n = 0; n < (per_channel ? N : 1); ++n) {
    float a = 0;
    for (int64_t k = 0; k < K; ++k) a = std::max(a, std::fabs(W[size_t(n * K + k)]));
    w.scale.push_back((per_channel ? a : all) / 448.0f);
  }
  w.w.resize(size_t(N * K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      w.w[size_t(n * K + k)] = f32_to_fp8e4m3(W[size_t(n * K + k)] / w.scale[per_channel ? size_t(n) : 0]);
  if (static_act) w.input_scale = 0.02f;
  return w;
}

struct Variant {
  std::string name;
  CheckpointFormat f;
  int bits = 4;
  bool sym = true, act = false, dq = false, per_channel = true, static_act = false;
};

std::vector<Variant> variants() {
  return {{"gptq4", CheckpointFormat::Gptq, 4, true},
          {"gptq8_act_asym", CheckpointFormat::Gptq, 8, false, true},
          {"gptq4_asym", CheckpointFormat::Gptq, 4, false},
          {"awq4", CheckpointFormat::Awq, 4, false},
          {"ct_w4a16_act", CheckpointFormat::CtPacked, 4, true, true},
          {"ct_w8a16_asym", CheckpointFormat::CtPacked, 8, false},
          {"nf4", CheckpointFormat::BnbNf4},
          {"nf4_dq", CheckpointFormat::BnbNf4, 4, true, false, true},
          {"fp8_dynamic", CheckpointFormat::CtFp8},
          {"fp8_static_tensor", CheckpointFormat::CtFp8, 8, true, false, false, false, true}};
}

// All linear layers of the fixture, quantized in one format and written; every
// layer read back must dequantize bit-identically, and load_linear must run it.
TEST(CheckpointRoundTrip, FixtureEveryFormatBitIdenticalAndLoads) {
  const std::string src = lq::testing::fixture_dir("tiny-llama31");
  const ModelConfig cfg = load_model_config(src);
  SafeTensors st = SafeTensors::open(src);
  struct L { std::string p; int64_t out, in; };
  std::vector<L> layers;
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    const int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
    layers.push_back({p + ".self_attn.q_proj", cfg.q_dim(), H});
    layers.push_back({p + ".self_attn.k_proj", cfg.kv_dim(), H});
    layers.push_back({p + ".self_attn.v_proj", cfg.kv_dim(), H});
    layers.push_back({p + ".self_attn.o_proj", H, cfg.q_dim()});
    layers.push_back({p + ".mlp.gate_proj", I, H});
    layers.push_back({p + ".mlp.up_proj", I, H});
    layers.push_back({p + ".mlp.down_proj", H, I});
  }
  for (const Variant& v : variants()) {
    SCOPED_TRACE(v.name);
    const std::string out = temp_dir("rt_" + v.name);
    QuantizedCheckpointWriter::Options opt;
    opt.format = v.f;
    opt.settings = {{"method", "rtn-test"}, {"damp_percent", 0.01}};
    QuantizedCheckpointWriter w(src, out, opt);
    std::map<std::string, std::vector<float>> want;  // dequantized as given to the writer
    for (const L& l : layers) {
      const std::vector<float> W = tensor_to_f32(st.get(l.p + ".weight"));
      if (v.f == CheckpointFormat::BnbNf4) {
        const Nf4Blocks q = rtn_nf4(W, l.out, l.in, v.dq);
        want[l.p] = dequantize(q);
        w.add(l.p, q);
      } else if (v.f == CheckpointFormat::CtFp8) {
        const Fp8Weight q = rtn_fp8(W, l.out, l.in, v.per_channel, v.static_act);
        want[l.p] = dequantize(q);
        w.add(l.p, q);
      } else {
        const AffineGroups q = rtn_affine(W, l.out, l.in, v.bits, 32, v.sym, v.f, v.act);
        want[l.p] = dequantize(q);
        w.add(l.p, q);
      }
    }
    w.finish();
    const ModelConfig qcfg = load_model_config(out);
    SafeTensors qst = SafeTensors::open(out);
    const auto scheme = quant_scheme_of(qcfg, out + "/config.json");
    ASSERT_TRUE(scheme.has_value());
    EXPECT_EQ(scheme->format, v.f);
    const json qc = json::parse(qcfg.raw_json)["quantization_config"];
    EXPECT_EQ(qc["longquant"]["method"], "rtn-test");  // settings recorded verbatim
    if (v.f == CheckpointFormat::Gptq) {
      EXPECT_EQ(qc["damp_percent"], 0.01);
      EXPECT_EQ(qc["desc_act"], v.act);
      EXPECT_TRUE(fs::exists(out + "/quantize_config.json"));
    }
    EXPECT_TRUE(fs::exists(out + "/generation_config.json"));
    for (const L& l : layers) {
      std::vector<float> got;
      switch (stored_family(qst, *scheme, l.p)) {
        case WeightFamily::Affine: got = dequantize(read_affine(qst, *scheme, l.p, l.out, l.in)); break;
        case WeightFamily::Nf4: got = dequantize(read_nf4(qst, *scheme, l.p, l.out, l.in)); break;
        case WeightFamily::Fp8: got = dequantize(read_fp8(qst, *scheme, l.p, l.out, l.in)); break;
        case WeightFamily::Float: FAIL() << l.p << " was not written quantized";
      }
      ASSERT_EQ(got.size(), want[l.p].size());
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[l.p][i])) << l.p << " " << i;
    }
    // lm_head stays bf16; every quantized layer runs through load_linear.
    auto head = load_linear(qst, qcfg, "lm_head", qcfg.vocab_size, qcfg.hidden_size, false);
    EXPECT_NE(dynamic_cast<Bf16Linear*>(head.get()), nullptr);
    for (const L& l : {layers[0], layers.back()}) {
      auto lin = load_linear(qst, qcfg, l.p, l.out, l.in, false);
      EXPECT_EQ(dynamic_cast<Bf16Linear*>(lin.get()), nullptr) << l.p;
      for (int64_t M : {1, 6}) {
        std::mt19937 rng(static_cast<uint32_t>(M));
        std::normal_distribution<float> nd;
        std::vector<float> X(size_t(M * l.in)), Y(size_t(M * l.out));
        for (float& x : X) x = nd(rng);
        std::vector<float> Xq = X;  // FP8 W8A8: the activations the layer quantizes to
        if (auto* f8 = dynamic_cast<Fp8Linear*>(lin.get())) {
          const std::vector<float> s = f8->activation_scales(X.data(), M);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t k = 0; k < l.in; ++k) {
              float& x = Xq[size_t(m * l.in + k)];
              x = float(double(fp8e4m3_to_f32(f32_to_fp8e4m3(x / s[size_t(m)]))) * s[size_t(m)]);
            }
        }
        lin->forward(X.data(), M, Y.data(), Precision::F32);
        const std::vector<float>& Wd = want[l.p];
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < l.out; ++n) {
            double r = 0, a = 0;
            for (int64_t k = 0; k < l.in; ++k) {
              const double t = double(Xq[size_t(m * l.in + k)]) * Wd[size_t(n * l.in + k)];
              r += t;
              a += std::fabs(t);
            }
            ASSERT_NEAR(Y[size_t(m * l.out + n)], r, 1e-5 * a + 1e-7) << l.p << " M=" << M << " n=" << n;
          }
      }
    }
  }
}

TEST(CheckpointWriter, GptqZeroOfZeroSwitchesToV2AndSettingsMustAgree) {
  const std::string src = lq::testing::fixture_dir("tiny-llama31");
  SafeTensors st = SafeTensors::open(src);
  const std::string p = "model.layers.0.self_attn.k_proj";
  const std::vector<float> W = tensor_to_f32(st.get(p + ".weight"));
  AffineGroups q = rtn_affine(W, 32, 64, 4, 32, false, CheckpointFormat::Gptq, false);
  q.zeros[0] = 0.0f;  // not storable as v1 (zero - 1 = -1)
  const std::string out = temp_dir("v2");
  QuantizedCheckpointWriter w(src, out, {CheckpointFormat::Gptq, json::object(), true});
  w.add(p, q);
  AffineGroups q8 = rtn_affine(tensor_to_f32(st.get("model.layers.0.self_attn.v_proj.weight")), 32, 64, 8, 32, false,
                               CheckpointFormat::Gptq, false);
  EXPECT_THROW(w.add("model.layers.0.self_attn.v_proj", q8), Error);  // bits differ from the first layer
  EXPECT_THROW(w.add(p, q), Error);                                     // added twice
  w.finish();
  const ModelConfig cfg = load_model_config(out);
  const auto s = quant_scheme_of(cfg, out);
  ASSERT_TRUE(s && s->gptq_v2);
  SafeTensors qst = SafeTensors::open(out);
  EXPECT_EQ(dequantize(read_affine(qst, *s, p, 32, 64)), dequantize(q));
  // The source must not already be quantized.
  EXPECT_THROW(QuantizedCheckpointWriter(out, temp_dir("again"), {}), Error);
}

}  // namespace
}  // namespace lq::quant
