// quant/checkpoint.cc: readers and writers of the Hugging Face quantized layouts
// (see checkpoint.h and docs/quant-formats.md for the layouts).
//
// Every reader checks dtype and shape of each tensor it touches and every code
// it decodes; errors name the file, the tensor and the field. Packed integers
// are read with memcpy (safetensors data is only byte-aligned in general).
#include "quant/checkpoint.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/dtype.h"
#include "core/error.h"
#include "io/json_util.h"
#include "quant/affine.h"
#include "quant/fp8.h"
#include "quant/linear.h"
#include "quant/nf4.h"

namespace lq::quant {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// AWQ GEMM: nibble i (bits 4i..4i+3) of a packed word holds column 8j + kAwqOrder[i].
constexpr std::array<int, 8> kAwqOrder = {0, 2, 4, 6, 1, 3, 5, 7};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

const TensorInfo& need(const SafeTensors& st, const std::string& name, DType dt, const std::vector<int64_t>& shape,
                       const std::string& why) {
  const TensorInfo& t = st.get(name);
  if (t.dtype != dt)
    fail("{}: tensor '{}' has dtype {}, expected {} ({})", t.file, name, dtype_name(t.dtype), dtype_name(dt), why);
  if (t.shape != shape)
    fail("{}: tensor '{}' has shape {}, expected {} ({})", t.file, name, t.shape_str(), shape_str(shape), why);
  return t;
}

bool is_float_dtype(DType d) { return d == DType::BF16 || d == DType::F16 || d == DType::F32; }

const TensorInfo& need_float(const SafeTensors& st, const std::string& name, const std::vector<int64_t>& shape,
                             const std::string& why) {
  const TensorInfo& t = st.get(name);
  if (!is_float_dtype(t.dtype))
    fail("{}: tensor '{}' has dtype {}, expected BF16, F16 or F32 ({})", t.file, name, dtype_name(t.dtype), why);
  if (t.shape != shape)
    fail("{}: tensor '{}' has shape {}, expected {} ({})", t.file, name, t.shape_str(), shape_str(shape), why);
  return t;
}

inline uint32_t word_at(const TensorInfo& t, int64_t i) {
  uint32_t v;
  std::memcpy(&v, t.data + 4 * i, 4);
  return v;
}

std::vector<int32_t> read_i32(const TensorInfo& t) {
  std::vector<int32_t> r(size_t(t.numel()));
  if (!r.empty()) std::memcpy(r.data(), t.data, r.size() * 4);
  return r;
}

template <typename T>
void put(std::vector<uint8_t>& bytes, size_t i, T v) {
  std::memcpy(bytes.data() + i * sizeof(T), &v, sizeof(T));
}

EncodedTensor make_tensor(std::string name, DType dt, std::vector<int64_t> shape) {
  EncodedTensor e;
  e.name = std::move(name);
  e.dtype = dt;
  e.shape = std::move(shape);
  int64_t n = 1;
  for (int64_t d : e.shape) n *= d;
  e.bytes.assign(size_t(n) * dtype_size(dt), 0);
  return e;
}

EncodedTensor f32_tensor(std::string name, std::vector<int64_t> shape, const std::vector<float>& v) {
  EncodedTensor e = make_tensor(std::move(name), DType::F32, std::move(shape));
  LQ_ASSERT(e.bytes.size() == v.size() * 4);
  if (!v.empty()) std::memcpy(e.bytes.data(), v.data(), e.bytes.size());
  return e;
}

// Scales [G][N] (ours) -> F16 [G, N] (GPTQ / AWQ).
EncodedTensor f16_scales_gn(const std::string& name, const AffineGroups& w, int64_t G) {
  EncodedTensor e = make_tensor(name, DType::F16, {G, w.out});
  for (int64_t i = 0; i < G * w.out; ++i) put<uint16_t>(e.bytes, size_t(i), f32_to_f16(w.scales[size_t(i)]));
  return e;
}

int64_t groups_of(const AffineGroups& w) {
  if (w.g_idx.empty()) return w.n_groups();
  int64_t G = 0;
  for (int32_t g : w.g_idx) G = std::max<int64_t>(G, int64_t(g) + 1);
  return G;
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// ---- quantization_config field access with named errors --------------------------

struct Q {
  const json& j;
  const std::string& src;
  std::string path;  // "quantization_config." or deeper

  const json* find(const char* k) const {
    auto it = j.find(k);
    return (it == j.end() || it->is_null()) ? nullptr : &*it;
  }
  [[noreturn]] void bad(const char* k, const std::string& what) const {
    fail("{}: {}{} {}", src, path, k, what);
  }
  int64_t get_int(const char* k, int64_t def, bool required = false) const {
    const json* v = find(k);
    if (!v) {
      if (required) bad(k, "is missing");
      return def;
    }
    int64_t r;
    if (!json_get_int(*v, &r)) bad(k, fmt::format("is a JSON {}, expected an integer", json_type_name(*v)));
    return r;
  }
  bool get_bool(const char* k, bool def) const {
    const json* v = find(k);
    if (!v) return def;
    if (!v->is_boolean()) bad(k, fmt::format("is a JSON {}, expected true or false", json_type_name(*v)));
    return v->get<bool>();
  }
  std::string get_string(const char* k, const std::string& def) const {
    const json* v = find(k);
    if (!v) return def;
    if (!v->is_string()) bad(k, fmt::format("is a JSON {}, expected a string", json_type_name(*v)));
    return v->get<std::string>();
  }
};

void parse_gptq(const Q& q, QuantScheme& s) {
  s.format = CheckpointFormat::Gptq;
  s.bits = int(q.get_int("bits", 4, true));
  if (s.bits != 4 && s.bits != 8)
    q.bad("bits", fmt::format("is {}; longquant reads 4- and 8-bit GPTQ checkpoints", s.bits));
  s.group_size = q.get_int("group_size", 128);
  if (s.group_size == 0 || s.group_size < -1) q.bad("group_size", fmt::format("is {}; expected -1 or > 0", s.group_size));
  s.desc_act = q.get_bool("desc_act", false);
  s.sym = q.get_bool("sym", true);
  std::string f = q.get_string("checkpoint_format", q.get_string("format", "gptq"));
  if (f == "gptq_v2") s.gptq_v2 = true;
  else if (f != "gptq")
    q.bad(q.find("checkpoint_format") ? "checkpoint_format" : "format",
          fmt::format("is '{}'; supported: gptq, gptq_v2 (other packings such as marlin are not read)", f));
}

void parse_awq(const Q& q, QuantScheme& s) {
  s.format = CheckpointFormat::Awq;
  s.bits = int(q.get_int("bits", q.get_int("w_bit", 4)));
  if (s.bits != 4) q.bad("bits", fmt::format("is {}; AWQ GEMM checkpoints are 4-bit", s.bits));
  s.group_size = q.get_int("group_size", q.get_int("q_group_size", 128));
  if (s.group_size <= 0) q.bad("group_size", fmt::format("is {}; expected > 0", s.group_size));
  const std::string v = lower(q.get_string("version", "gemm"));
  if (v != "gemm") q.bad("version", fmt::format("is '{}'; only the GEMM packing is supported", v));
  if (!q.get_bool("zero_point", true))
    q.bad("zero_point", "is false; longquant reads AWQ checkpoints with zero points (zero_point: true)");
  s.sym = false;
}

void parse_bnb(const Q& q, QuantScheme& s) {
  s.format = CheckpointFormat::BnbNf4;
  if (q.get_bool("load_in_8bit", false))
    q.bad("load_in_8bit", "is true; bitsandbytes LLM.int8 checkpoints are not supported (only 4-bit NF4)");
  if (!q.get_bool("load_in_4bit", false)) q.bad("load_in_4bit", "is not true; only 4-bit NF4 is supported");
  const std::string t = q.get_string("bnb_4bit_quant_type", "fp4");
  if (t != "nf4") q.bad("bnb_4bit_quant_type", fmt::format("is '{}'; only nf4 is supported", t));
}

void parse_ct(const Q& q, QuantScheme& s) {
  std::string fmt_top = q.get_string("format", "");
  const json* groups = q.find("config_groups");
  if (!groups) q.bad("config_groups", "is missing");
  if (!groups->is_object() || groups->empty()) q.bad("config_groups", "must be a non-empty object");
  bool first = true;
  QuantScheme ref;
  for (auto it = groups->begin(); it != groups->end(); ++it) {
    const std::string gpath = q.path + "config_groups." + it.key() + ".";
    if (!it->is_object()) fail("{}: {} is not an object", q.src, gpath);
    Q g{*it, q.src, gpath};
    QuantScheme cur = s;
    const std::string gfmt = g.get_string("format", fmt_top);
    const json* wj = g.find("weights");
    if (!wj || !wj->is_object()) g.bad("weights", "is missing or not an object");
    Q w{*wj, q.src, gpath + "weights."};
    const std::string type = w.get_string("type", "int");
    const int bits = int(w.get_int("num_bits", 8, true));
    const std::string strategy = w.get_string("strategy", "tensor");
    if (w.find("block_structure") && strategy == "block")
      w.bad("strategy", "is 'block'; block-wise FP8 scales are not supported");
    const json* aj = g.find("input_activations");
    if (type == "float") {
      if (gfmt != "float-quantized" && gfmt != "naive-quantized" && !gfmt.empty())
        g.bad("format", fmt::format("is '{}' for float weights; expected float-quantized", gfmt));
      if (bits != 8) w.bad("num_bits", fmt::format("is {}; only 8-bit float (E4M3) weights are supported", bits));
      if (strategy != "channel" && strategy != "tensor")
        w.bad("strategy", fmt::format("is '{}'; FP8 weights need strategy channel or tensor", strategy));
      cur.format = CheckpointFormat::CtFp8;
      cur.weight_strategy = strategy;
      if (aj) {
        if (!aj->is_object()) g.bad("input_activations", "is not an object");
        Q a{*aj, q.src, gpath + "input_activations."};
        if (a.get_string("type", "float") != "float" || a.get_int("num_bits", 8) != 8)
          a.bad("type", "must be 8-bit float (E4M3) activations");
        cur.act_dynamic = a.get_bool("dynamic", true);
        cur.act_strategy = a.get_string("strategy", cur.act_dynamic ? "token" : "tensor");
        if (cur.act_dynamic && cur.act_strategy != "token")
          a.bad("strategy", fmt::format("is '{}'; dynamic FP8 activations must be per token", cur.act_strategy));
        if (!cur.act_dynamic && cur.act_strategy != "tensor")
          a.bad("strategy", fmt::format("is '{}'; static FP8 activations must be per tensor", cur.act_strategy));
      } else {
        cur.act_strategy = "";  // weight-only FP8
      }
    } else if (type == "int") {
      if (gfmt != "pack-quantized")
        g.bad("format", fmt::format("is '{}' for int weights; only pack-quantized (w4a16 / w8a16) is supported",
                                    gfmt));
      if (bits != 4 && bits != 8) w.bad("num_bits", fmt::format("is {}; expected 4 or 8", bits));
      if (aj) g.bad("input_activations", "is set; only weight-only int checkpoints (w4a16 / w8a16) are supported");
      cur.format = CheckpointFormat::CtPacked;
      cur.bits = bits;
      cur.sym = w.get_bool("symmetric", true);
      if (strategy == "group") {
        cur.group_size = w.get_int("group_size", 0, true);
        if (cur.group_size <= 0) w.bad("group_size", fmt::format("is {}; expected > 0", cur.group_size));
      } else if (strategy == "channel") {
        cur.group_size = -1;
      } else {
        w.bad("strategy", fmt::format("is '{}'; int weights need strategy group or channel", strategy));
      }
      const json* ao = w.find("actorder");
      cur.desc_act = ao && !(ao->is_boolean() && !ao->get<bool>());
    } else {
      w.bad("type", fmt::format("is '{}'; expected int or float", type));
    }
    if (first) {
      ref = cur;
      first = false;
    } else if (cur.format != ref.format || cur.bits != ref.bits || cur.group_size != ref.group_size ||
               cur.sym != ref.sym || cur.weight_strategy != ref.weight_strategy ||
               cur.act_dynamic != ref.act_dynamic || cur.act_strategy != ref.act_strategy) {
      fail("{}: {}config_groups: groups with different schemes are not supported (group '{}' differs from the "
           "first)", q.src, q.path, it.key());
    }
  }
  ref.source = s.source;
  ref.quant_method = s.quant_method;
  s = ref;
}

void parse_fp8_native(const Q& q, QuantScheme& s) {
  if (q.find("weight_block_size"))
    q.bad("weight_block_size", "is set; block-wise FP8 checkpoints are not supported");
  const std::string a = q.get_string("activation_scheme", "dynamic");
  if (a != "dynamic" && a != "static")
    q.bad("activation_scheme", fmt::format("is '{}'; expected dynamic or static", a));
  s.format = CheckpointFormat::CtFp8;
  s.weight_strategy = "";  // from weight_scale's shape
  s.act_dynamic = a == "dynamic";
  s.act_strategy = s.act_dynamic ? "token" : "tensor";
}

}  // namespace

std::string_view format_name(CheckpointFormat f) {
  switch (f) {
    case CheckpointFormat::Gptq: return "gptq";
    case CheckpointFormat::Awq: return "awq";
    case CheckpointFormat::BnbNf4: return "bnb-nf4";
    case CheckpointFormat::CtFp8: return "ct-fp8";
    case CheckpointFormat::CtPacked: return "ct-packed";
  }
  return "?";
}

CheckpointFormat parse_checkpoint_format(std::string_view s) {
  for (auto f : {CheckpointFormat::Gptq, CheckpointFormat::Awq, CheckpointFormat::BnbNf4, CheckpointFormat::CtFp8,
                 CheckpointFormat::CtPacked})
    if (format_name(f) == s) return f;
  fail("unknown checkpoint format '{}' (expected gptq, awq, bnb-nf4, ct-fp8 or ct-packed)", s);
}

QuantScheme parse_quant_scheme(const json& qc, const std::string& source) {
  if (!qc.is_object()) fail("{}: quantization_config is a JSON {}, expected an object", source, json_type_name(qc));
  QuantScheme s;
  s.source = source;
  Q q{qc, source, "quantization_config."};
  s.quant_method = q.get_string("quant_method", "");
  const std::string m = lower(s.quant_method);
  if (m == "gptq") parse_gptq(q, s);
  else if (m == "awq") parse_awq(q, s);
  else if (m == "bitsandbytes") parse_bnb(q, s);
  else if (m == "compressed-tensors" || m == "compressed_tensors") parse_ct(q, s);
  else if (m == "fp8") parse_fp8_native(q, s);
  else if (m.empty()) q.bad("quant_method", "is missing");
  else
    q.bad("quant_method", fmt::format("is '{}'; supported: gptq, awq, bitsandbytes (nf4), compressed-tensors, fp8",
                                      s.quant_method));
  return s;
}

std::optional<QuantScheme> quant_scheme_of(const ModelConfig& cfg, const std::string& source) {
  if (cfg.quantization_method.empty() && cfg.raw_json.find("quantization_config") == std::string::npos)
    return std::nullopt;
  const json j = parse_json(cfg.raw_json, source);
  auto it = j.find("quantization_config");
  if (it == j.end() || it->is_null()) return std::nullopt;
  return parse_quant_scheme(*it, source);
}

WeightFamily stored_family(const SafeTensors& st, const QuantScheme& s, const std::string& prefix) {
  switch (s.format) {
    case CheckpointFormat::Gptq:
    case CheckpointFormat::Awq:
      return st.has(prefix + ".qweight") ? WeightFamily::Affine : WeightFamily::Float;
    case CheckpointFormat::CtPacked:
      return st.has(prefix + ".weight_packed") ? WeightFamily::Affine : WeightFamily::Float;
    case CheckpointFormat::BnbNf4:
      return st.has(prefix + ".weight.quant_state.bitsandbytes__nf4") ? WeightFamily::Nf4 : WeightFamily::Float;
    case CheckpointFormat::CtFp8:
      return (st.has(prefix + ".weight") && st.get(prefix + ".weight").dtype == DType::F8_E4M3) ? WeightFamily::Fp8
                                                                                                : WeightFamily::Float;
  }
  return WeightFamily::Float;
}

// ---- readers -----------------------------------------------------------------------

namespace {

AffineGroups read_gptq(const SafeTensors& st, const QuantScheme& s, const std::string& p, int64_t N, int64_t K) {
  AffineGroups w;
  w.bits = s.bits;
  w.out = N;
  w.in = K;
  w.sym = s.sym;
  w.group_size = s.group_size == -1 ? K : s.group_size;
  const int pf = 32 / s.bits;
  const uint32_t mask = (1u << s.bits) - 1;
  const std::string cfgwhy = fmt::format("{}-bit GPTQ, group_size {} from {}", s.bits, s.group_size, s.source);
  LQ_CHECK(K % pf == 0 && N % pf == 0, "{}: layer '{}' [{}, {}] cannot be {}-bit GPTQ-packed ({} values per int32)",
           st.source(), p, N, K, s.bits, pf);
  const int64_t G = w.n_groups();
  const TensorInfo& qw = need(st, p + ".qweight", DType::I32, {K / pf, N}, cfgwhy);
  const TensorInfo& qz = need(st, p + ".qzeros", DType::I32, {G, N / pf}, cfgwhy);
  const TensorInfo& sc = need_float(st, p + ".scales", {G, N}, cfgwhy);
  if (st.has(p + ".g_idx")) {
    const TensorInfo& gi = need(st, p + ".g_idx", DType::I32, {K}, cfgwhy);
    w.g_idx = read_i32(gi);
    for (int64_t k = 0; k < K; ++k)
      LQ_CHECK(w.g_idx[size_t(k)] >= 0 && w.g_idx[size_t(k)] < G,
               "{}: tensor '{}.g_idx' entry {} is {}, outside [0, {}) groups", gi.file, p, k, w.g_idx[size_t(k)], G);
    if (trivial_g_idx(w)) w.g_idx.clear();
  } else {
    LQ_CHECK(!s.desc_act, "{}: tensor '{}.g_idx' is missing but {} sets desc_act", st.source(), p, s.source);
  }
  w.q.resize(size_t(N * K));
  for (int64_t r = 0; r < K / pf; ++r)
    for (int64_t n = 0; n < N; ++n) {
      const uint32_t v = word_at(qw, r * N + n);
      for (int i = 0; i < pf; ++i) w.q[size_t(n * K + r * pf + i)] = uint8_t((v >> (i * s.bits)) & mask);
    }
  w.scales = tensor_to_f32(sc);
  w.zeros.resize(size_t(G * N));
  const float off = s.gptq_v2 ? 0.0f : 1.0f;
  for (int64_t g = 0; g < G; ++g)
    for (int64_t c = 0; c < N / pf; ++c) {
      const uint32_t v = word_at(qz, g * (N / pf) + c);
      for (int i = 0; i < pf; ++i) w.zeros[size_t(g * N + c * pf + i)] = float((v >> (i * s.bits)) & mask) + off;
    }
  return w;
}

AffineGroups read_awq(const SafeTensors& st, const QuantScheme& s, const std::string& p, int64_t N, int64_t K) {
  AffineGroups w;
  w.bits = 4;
  w.out = N;
  w.in = K;
  w.sym = false;
  w.group_size = s.group_size;
  LQ_CHECK(N % 8 == 0 && K % s.group_size == 0,
           "{}: layer '{}' [{}, {}] cannot be AWQ-packed with group_size {} (out must be a multiple of 8, in of the "
           "group size)", st.source(), p, N, K, s.group_size);
  const int64_t G = K / s.group_size;
  const std::string cfgwhy = fmt::format("4-bit AWQ GEMM, group_size {} from {}", s.group_size, s.source);
  const TensorInfo& qw = need(st, p + ".qweight", DType::I32, {K, N / 8}, cfgwhy);
  const TensorInfo& qz = need(st, p + ".qzeros", DType::I32, {G, N / 8}, cfgwhy);
  const TensorInfo& sc = need_float(st, p + ".scales", {G, N}, cfgwhy);
  w.q.resize(size_t(N * K));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < N / 8; ++j) {
      const uint32_t v = word_at(qw, k * (N / 8) + j);
      for (int i = 0; i < 8; ++i) w.q[size_t((j * 8 + kAwqOrder[size_t(i)]) * K + k)] = uint8_t((v >> (4 * i)) & 15u);
    }
  w.scales = tensor_to_f32(sc);
  w.zeros.resize(size_t(G * N));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t j = 0; j < N / 8; ++j) {
      const uint32_t v = word_at(qz, g * (N / 8) + j);
      for (int i = 0; i < 8; ++i) w.zeros[size_t(g * N + j * 8 + kAwqOrder[size_t(i)])] = float((v >> (4 * i)) & 15u);
    }
  return w;
}

AffineGroups read_ct_packed(const SafeTensors& st, const QuantScheme& s, const std::string& p, int64_t N, int64_t K) {
  AffineGroups w;
  w.bits = s.bits;
  w.out = N;
  w.in = K;
  w.sym = s.sym;
  w.group_size = s.group_size == -1 ? K : s.group_size;
  const int pf = 32 / s.bits;
  const uint32_t mask = (1u << s.bits) - 1;
  const int64_t G = w.n_groups();
  const int64_t KW = (K + pf - 1) / pf;
  const std::string cfgwhy = fmt::format("{}-bit pack-quantized, group_size {} from {}", s.bits, s.group_size, s.source);
  const TensorInfo& wp = need(st, p + ".weight_packed", DType::I32, {N, KW}, cfgwhy);
  if (st.has(p + ".weight_shape")) {
    const TensorInfo& ws = st.get(p + ".weight_shape");
    LQ_CHECK((ws.dtype == DType::I64 || ws.dtype == DType::I32) && ws.numel() == 2,
             "{}: tensor '{}.weight_shape' must hold 2 integers, has dtype {} shape {}", ws.file, p,
             dtype_name(ws.dtype), ws.shape_str());
    int64_t d[2];
    for (int i = 0; i < 2; ++i) {
      if (ws.dtype == DType::I64) std::memcpy(&d[i], ws.data + 8 * i, 8);
      else { int32_t v; std::memcpy(&v, ws.data + 4 * i, 4); d[i] = v; }
    }
    LQ_CHECK(d[0] == N && d[1] == K, "{}: tensor '{}.weight_shape' is [{}, {}], expected [{}, {}] from config.json",
             ws.file, p, d[0], d[1], N, K);
  }
  const TensorInfo& sc = need_float(st, p + ".weight_scale", {N, G}, cfgwhy);
  if (st.has(p + ".weight_g_idx")) {
    const TensorInfo& gi = need(st, p + ".weight_g_idx", DType::I32, {K}, cfgwhy);
    w.g_idx = read_i32(gi);
    for (int64_t k = 0; k < K; ++k)
      LQ_CHECK(w.g_idx[size_t(k)] >= 0 && w.g_idx[size_t(k)] < G,
               "{}: tensor '{}.weight_g_idx' entry {} is {}, outside [0, {}) groups", gi.file, p, k,
               w.g_idx[size_t(k)], G);
    if (trivial_g_idx(w)) w.g_idx.clear();
  }
  w.q.resize(size_t(N * K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < KW; ++c) {
      const uint32_t v = word_at(wp, n * KW + c);
      for (int i = 0; i < pf && c * pf + i < K; ++i) w.q[size_t(n * K + c * pf + i)] = uint8_t((v >> (i * s.bits)) & mask);
    }
  const std::vector<float> scT = tensor_to_f32(sc);  // [N][G]
  w.scales.resize(size_t(G * N));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) w.scales[size_t(g * N + n)] = scT[size_t(n * G + g)];
  const float offset = float(1 << (s.bits - 1));
  w.zeros.assign(size_t(G * N), offset);
  const std::string zpn = p + ".weight_zero_point";
  if (st.has(zpn)) {
    const TensorInfo& zp = st.get(zpn);
    const int64_t NW = (N + pf - 1) / pf;
    if (zp.dtype == DType::I32 && zp.shape == std::vector<int64_t>{NW, G}) {
      // Packed along the output dimension, offset-binary like the weights.
      for (int64_t r = 0; r < NW; ++r)
        for (int64_t g = 0; g < G; ++g) {
          const uint32_t v = word_at(zp, r * G + g);
          for (int i = 0; i < pf && r * pf + i < N; ++i)
            w.zeros[size_t(g * N + r * pf + i)] = float((v >> (i * s.bits)) & mask);
        }
    } else if (zp.shape == std::vector<int64_t>{N, G} && (zp.dtype == DType::I8 || is_float_dtype(zp.dtype))) {
      // Unpacked signed zero points: stored value + offset.
      std::vector<float> z(size_t(N * G));
      if (zp.dtype == DType::I8) {
        for (int64_t i = 0; i < N * G; ++i) z[size_t(i)] = float(int8_t(zp.data[i]));
      } else {
        z = tensor_to_f32(zp);
      }
      for (int64_t n = 0; n < N; ++n)
        for (int64_t g = 0; g < G; ++g) w.zeros[size_t(g * N + n)] = z[size_t(n * G + g)] + offset;
    } else {
      fail("{}: tensor '{}' has dtype {} shape {}; expected I32 [{}, {}] (packed) or I8 [{}, {}]", zp.file, zpn,
           dtype_name(zp.dtype), zp.shape_str(), NW, G, N, G);
    }
  } else {
    LQ_CHECK(s.sym, "{}: tensor '{}' is missing but {} says the weights are asymmetric", st.source(), zpn, s.source);
  }
  return w;
}

}  // namespace

AffineGroups read_affine(const SafeTensors& st, const QuantScheme& s, const std::string& prefix, int64_t out,
                         int64_t in) {
  AffineGroups w;
  switch (s.format) {
    case CheckpointFormat::Gptq: w = read_gptq(st, s, prefix, out, in); break;
    case CheckpointFormat::Awq: w = read_awq(st, s, prefix, out, in); break;
    case CheckpointFormat::CtPacked: w = read_ct_packed(st, s, prefix, out, in); break;
    default: fail("{}: layer '{}': format {} does not store affine int weights", st.source(), prefix,
                  format_name(s.format));
  }
  validate(w, st.source() + ": " + prefix);
  return w;
}

Nf4Blocks read_nf4(const SafeTensors& st, const QuantScheme& s, const std::string& p, int64_t N, int64_t K) {
  Nf4Blocks w;
  w.out = N;
  w.in = K;
  const std::string qsn = p + ".weight.quant_state.bitsandbytes__nf4";
  const TensorInfo& qs = st.get(qsn);
  LQ_CHECK(qs.dtype == DType::U8 && qs.shape.size() == 1, "{}: tensor '{}' has dtype {} shape {}, expected U8 [n]",
           qs.file, qsn, dtype_name(qs.dtype), qs.shape_str());
  const json j = parse_json(std::string_view(reinterpret_cast<const char*>(qs.data), qs.nbytes), qs.file + ": " + qsn);
  if (!j.is_object()) fail("{}: tensor '{}' does not hold a JSON object", qs.file, qsn);
  const std::string src = qs.file + ": " + qsn;
  Q q{j, src, ""};
  const std::string qt = q.get_string("quant_type", "");
  if (qt != "nf4") q.bad("quant_type", fmt::format("is '{}', expected nf4", qt));
  w.blocksize = q.get_int("blocksize", 0, true);
  if (w.blocksize <= 0) q.bad("blocksize", fmt::format("is {}, expected > 0", w.blocksize));
  const json* sh = q.find("shape");
  if (!sh || !sh->is_array() || sh->size() != 2) q.bad("shape", "is missing or not a 2-element list");
  int64_t d0 = 0, d1 = 0;
  if (!json_get_int((*sh)[0], &d0) || !json_get_int((*sh)[1], &d1) || d0 != N || d1 != K)
    q.bad("shape", fmt::format("is {}, expected [{}, {}] from config.json", sh->dump(), N, K));
  LQ_CHECK((N * K) % 2 == 0, "{}: layer '{}' has an odd number of weights", st.source(), p);
  const int64_t nb = (N * K + w.blocksize - 1) / w.blocksize;
  const std::string why = fmt::format("bitsandbytes nf4, blocksize {}", w.blocksize);
  const TensorInfo& wt = st.get(p + ".weight");
  LQ_CHECK(wt.dtype == DType::U8 && (wt.shape == std::vector<int64_t>{N * K / 2, 1} ||
                                     wt.shape == std::vector<int64_t>{N * K / 2}),
           "{}: tensor '{}.weight' has dtype {} shape {}, expected U8 [{}, 1] ({})", wt.file, p, dtype_name(wt.dtype),
           wt.shape_str(), N * K / 2, why);
  w.packed.assign(wt.data, wt.data + wt.nbytes);
  const TensorInfo& qm = need(st, p + ".weight.quant_map", DType::F32, {16}, why);
  for (int i = 0; i < 16; ++i) {
    float v;
    std::memcpy(&v, qm.data + 4 * i, 4);
    LQ_CHECK(v == kNf4Code[size_t(i)], "{}: tensor '{}.weight.quant_map' entry {} is {}, the NF4 code is {}", qm.file,
             p, i, v, kNf4Code[size_t(i)]);
  }
  w.double_quant = q.find("nested_blocksize") != nullptr;
  if (w.double_quant) {
    w.nested_blocksize = q.get_int("nested_blocksize", 0, true);
    if (w.nested_blocksize <= 0) q.bad("nested_blocksize", fmt::format("is {}, expected > 0", w.nested_blocksize));
    const json* off = q.find("nested_offset");
    if (!off || !off->is_number()) q.bad("nested_offset", "is missing or not a number");
    w.offset = float(off->get<double>());
    const int64_t nn = (nb + w.nested_blocksize - 1) / w.nested_blocksize;
    const std::string nwhy = why + fmt::format(", double quant with nested_blocksize {}", w.nested_blocksize);
    const TensorInfo& aq = need(st, p + ".weight.absmax", DType::U8, {nb}, nwhy);
    w.absmax_q.assign(aq.data, aq.data + aq.nbytes);
    w.nested_absmax = tensor_to_f32(need(st, p + ".weight.nested_absmax", DType::F32, {nn}, nwhy));
    const TensorInfo& nm = need(st, p + ".weight.nested_quant_map", DType::F32, {256}, nwhy);
    std::array<float, 256> dyn{};
    std::memcpy(dyn.data(), nm.data, 256 * 4);
    nf4_decode_absmax(w, dyn);
  } else {
    w.absmax = tensor_to_f32(need(st, p + ".weight.absmax", DType::F32, {nb}, why));
  }
  validate(w, st.source() + ": " + p);
  return w;
}

Fp8Weight read_fp8(const SafeTensors& st, const QuantScheme& s, const std::string& p, int64_t N, int64_t K) {
  Fp8Weight w;
  w.out = N;
  w.in = K;
  const TensorInfo& wt = need(st, p + ".weight", DType::F8_E4M3, {N, K}, "FP8 E4M3 weight from " + s.source);
  w.w.assign(wt.data, wt.data + wt.nbytes);
  const TensorInfo& sc = st.get(p + ".weight_scale");
  LQ_CHECK(is_float_dtype(sc.dtype), "{}: tensor '{}.weight_scale' has dtype {}, expected BF16, F16 or F32", sc.file,
           p, dtype_name(sc.dtype));
  const bool tensor_shape = sc.numel() == 1 && sc.shape.size() <= 1;
  const bool channel_shape =
      sc.shape == std::vector<int64_t>{N, 1} || sc.shape == std::vector<int64_t>{N};
  LQ_CHECK(tensor_shape || channel_shape, "{}: tensor '{}.weight_scale' has shape {}, expected [], [1] or [{}, 1]",
           sc.file, p, sc.shape_str(), N);
  w.per_channel = !tensor_shape;
  if (!s.weight_strategy.empty()) {
    const bool want_channel = s.weight_strategy == "channel";
    LQ_CHECK(want_channel ? (channel_shape) : tensor_shape,
             "{}: tensor '{}.weight_scale' has shape {} but {} sets weight strategy '{}'", sc.file, p, sc.shape_str(),
             s.source, s.weight_strategy);
  }
  w.scale = tensor_to_f32(sc);
  if (w.scale.size() != (w.per_channel ? size_t(N) : 1)) w.scale.resize(w.per_channel ? size_t(N) : 1);
  w.w8a8 = !s.act_strategy.empty();
  if (w.w8a8 && !s.act_dynamic) {
    const TensorInfo& is = st.get(p + ".input_scale");
    LQ_CHECK(is_float_dtype(is.dtype) && is.numel() == 1,
             "{}: tensor '{}.input_scale' has dtype {} shape {}, expected one float (static per-tensor scale)",
             is.file, p, dtype_name(is.dtype), is.shape_str());
    w.input_scale = tensor_to_f32(is)[0];
  }
  validate(w, st.source() + ": " + p);
  return w;
}

// ---- encoders ---------------------------------------------------------------------

float stored_scale(float s, CheckpointFormat f) {
  switch (f) {
    case CheckpointFormat::Gptq:
    case CheckpointFormat::Awq: return f16_to_f32(f32_to_f16(s));
    case CheckpointFormat::CtPacked: return round_bf16(s);
    default: return s;
  }
}

void round_scales(AffineGroups& w, CheckpointFormat f) {
  for (float& s : w.scales) s = stored_scale(s, f);
}

namespace {

EncodedTensor encode_gptq_qzeros(const std::string& prefix, const std::vector<float>& zeros, int64_t G, int64_t N,
                                 int bits, bool v2) {
  const int pf = 32 / bits;
  const uint32_t mask = (1u << bits) - 1;
  EncodedTensor e = make_tensor(prefix + ".qzeros", DType::I32, {G, N / pf});
  const int off = v2 ? 0 : 1;
  for (int64_t g = 0; g < G; ++g)
    for (int64_t c = 0; c < N / pf; ++c) {
      uint32_t v = 0;
      for (int i = 0; i < pf; ++i) {
        const int z = int(zeros[size_t(g * N + c * pf + i)]) - off;
        LQ_CHECK(z >= 0 && uint32_t(z) <= mask,
                 "{}: zero point {} (group {}, output {}) cannot be stored in {}-bit GPTQ {}", prefix, z + off, g,
                 c * pf + i, bits, v2 ? "v2" : "v1 (stored as zero - 1)");
        v |= uint32_t(z) << (i * bits);
      }
      put<uint32_t>(e.bytes, size_t(g * (N / pf) + c), v);
    }
  return e;
}

bool gptq_needs_v2(const AffineGroups& w) {
  for (float z : w.zeros)
    if (z < 1.0f) return true;
  return false;
}

}  // namespace

std::vector<EncodedTensor> encode_gptq(const AffineGroups& w, const std::string& prefix, bool gptq_v2) {
  validate(w, prefix);
  const int pf = 32 / w.bits;
  const int64_t N = w.out, K = w.in;
  LQ_CHECK(K % pf == 0 && N % pf == 0, "{}: [{}, {}] cannot be {}-bit GPTQ-packed ({} values per int32)", prefix, N,
           K, w.bits, pf);
  const int64_t G = groups_of(w);
  LQ_CHECK(G == w.n_groups(), "{}: g_idx names {} groups, GPTQ stores ceil(in / group_size) = {}", prefix, G,
           w.n_groups());
  std::vector<EncodedTensor> r;
  EncodedTensor qw = make_tensor(prefix + ".qweight", DType::I32, {K / pf, N});
  for (int64_t row = 0; row < K / pf; ++row)
    for (int64_t n = 0; n < N; ++n) {
      uint32_t v = 0;
      for (int i = 0; i < pf; ++i) v |= uint32_t(w.q[size_t(n * K + row * pf + i)]) << (i * w.bits);
      put<uint32_t>(qw.bytes, size_t(row * N + n), v);
    }
  r.push_back(std::move(qw));
  r.push_back(encode_gptq_qzeros(prefix, w.zeros, G, N, w.bits, gptq_v2));
  r.push_back(f16_scales_gn(prefix + ".scales", w, G));
  EncodedTensor gi = make_tensor(prefix + ".g_idx", DType::I32, {K});
  for (int64_t k = 0; k < K; ++k) put<int32_t>(gi.bytes, size_t(k), w.group_of(k));
  r.push_back(std::move(gi));
  return r;
}

std::vector<EncodedTensor> encode_awq(const AffineGroups& w, const std::string& prefix) {
  validate(w, prefix);
  const int64_t N = w.out, K = w.in;
  LQ_CHECK(w.bits == 4, "{}: AWQ GEMM stores 4-bit weights, got {}-bit", prefix, w.bits);
  LQ_CHECK(trivial_g_idx(w), "{}: AWQ cannot store act-order (g_idx) weights", prefix);
  LQ_CHECK(N % 8 == 0 && K % w.group_size == 0,
           "{}: [{}, {}] cannot be AWQ-packed with group_size {} (out must be a multiple of 8, in of the group size)",
           prefix, N, K, w.group_size);
  const int64_t G = K / w.group_size;
  std::vector<EncodedTensor> r;
  EncodedTensor qw = make_tensor(prefix + ".qweight", DType::I32, {K, N / 8});
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < N / 8; ++j) {
      uint32_t v = 0;
      for (int i = 0; i < 8; ++i) v |= uint32_t(w.q[size_t((j * 8 + kAwqOrder[size_t(i)]) * K + k)]) << (4 * i);
      put<uint32_t>(qw.bytes, size_t(k * (N / 8) + j), v);
    }
  r.push_back(std::move(qw));
  EncodedTensor qz = make_tensor(prefix + ".qzeros", DType::I32, {G, N / 8});
  for (int64_t g = 0; g < G; ++g)
    for (int64_t j = 0; j < N / 8; ++j) {
      uint32_t v = 0;
      for (int i = 0; i < 8; ++i) {
        const int64_t n = j * 8 + kAwqOrder[size_t(i)];
        const float z = w.zeros[size_t(g * N + n)];
        LQ_CHECK(z >= 0 && z <= 15, "{}: zero point {} (group {}, output {}) does not fit AWQ's 4 bits", prefix, z, g,
                 n);
        v |= uint32_t(z) << (4 * i);
      }
      put<uint32_t>(qz.bytes, size_t(g * (N / 8) + j), v);
    }
  r.push_back(std::move(qz));
  r.push_back(f16_scales_gn(prefix + ".scales", w, G));
  return r;
}

std::vector<EncodedTensor> encode_ct_packed(const AffineGroups& w, const std::string& prefix) {
  validate(w, prefix);
  const int64_t N = w.out, K = w.in;
  const int pf = 32 / w.bits;
  const uint32_t mask = (1u << w.bits) - 1;
  const int64_t G = groups_of(w);
  LQ_CHECK(G == w.n_groups(), "{}: g_idx names {} groups, compressed-tensors stores ceil(in / group_size) = {}",
           prefix, G, w.n_groups());
  const int64_t KW = (K + pf - 1) / pf;
  std::vector<EncodedTensor> r;
  EncodedTensor wp = make_tensor(prefix + ".weight_packed", DType::I32, {N, KW});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < KW; ++c) {
      uint32_t v = 0;
      for (int i = 0; i < pf && c * pf + i < K; ++i) v |= uint32_t(w.q[size_t(n * K + c * pf + i)]) << (i * w.bits);
      put<uint32_t>(wp.bytes, size_t(n * KW + c), v);
    }
  r.push_back(std::move(wp));
  EncodedTensor sc = make_tensor(prefix + ".weight_scale", DType::BF16, {N, G});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) put<uint16_t>(sc.bytes, size_t(n * G + g), f32_to_bf16(w.scales[size_t(g * N + n)]));
  r.push_back(std::move(sc));
  EncodedTensor ws = make_tensor(prefix + ".weight_shape", DType::I64, {2});
  put<int64_t>(ws.bytes, 0, N);
  put<int64_t>(ws.bytes, 1, K);
  r.push_back(std::move(ws));
  if (!trivial_g_idx(w)) {
    EncodedTensor gi = make_tensor(prefix + ".weight_g_idx", DType::I32, {K});
    for (int64_t k = 0; k < K; ++k) put<int32_t>(gi.bytes, size_t(k), w.g_idx[size_t(k)]);
    r.push_back(std::move(gi));
  }
  const float offset = float(1 << (w.bits - 1));
  bool all_offset = true;
  for (float z : w.zeros) all_offset = all_offset && z == offset;
  if (w.sym) {
    LQ_CHECK(all_offset, "{}: symmetric weights must have zero point {} in every group for compressed-tensors",
             prefix, offset);
  } else {
    const int64_t NW = (N + pf - 1) / pf;
    EncodedTensor zp = make_tensor(prefix + ".weight_zero_point", DType::I32, {NW, G});
    for (int64_t rr = 0; rr < NW; ++rr)
      for (int64_t g = 0; g < G; ++g) {
        uint32_t v = 0;
        for (int i = 0; i < pf && rr * pf + i < N; ++i) {
          const float z = w.zeros[size_t(g * N + rr * pf + i)];
          LQ_CHECK(z >= 0 && z <= float(mask), "{}: zero point {} (group {}, output {}) does not fit {} bits", prefix,
                   z, g, rr * pf + i, w.bits);
          v |= uint32_t(z) << (i * w.bits);
        }
        put<uint32_t>(zp.bytes, size_t(rr * G + g), v);
      }
    r.push_back(std::move(zp));
  }
  return r;
}

std::vector<EncodedTensor> encode_bnb_nf4(const Nf4Blocks& w, const std::string& prefix,
                                          const std::string& compute_dtype) {
  validate(w, prefix);
  const int64_t nb = int64_t(w.absmax.size());
  std::vector<EncodedTensor> r;
  EncodedTensor wt = make_tensor(prefix + ".weight", DType::U8, {w.out * w.in / 2, 1});
  std::memcpy(wt.bytes.data(), w.packed.data(), w.packed.size());
  r.push_back(std::move(wt));
  r.push_back(f32_tensor(prefix + ".weight.quant_map", {16}, std::vector<float>(kNf4Code.begin(), kNf4Code.end())));
  json qs = {{"quant_type", "nf4"},
             {"blocksize", w.blocksize},
             {"dtype", compute_dtype},
             {"shape", {w.out, w.in}}};
  if (w.double_quant) {
    // The codes must decode to the absmax values given (else the round trip changes the weights).
    Nf4Blocks chk = w;
    nf4_decode_absmax(chk, bnb_dynamic_map());
    for (int64_t b = 0; b < nb; ++b)
      LQ_CHECK(chk.absmax[size_t(b)] == w.absmax[size_t(b)],
               "{}: nf4 absmax[{}] = {} but its double-quantized code decodes to {} (dynamic map of bitsandbytes)",
               prefix, b, w.absmax[size_t(b)], chk.absmax[size_t(b)]);
    EncodedTensor aq = make_tensor(prefix + ".weight.absmax", DType::U8, {nb});
    std::memcpy(aq.bytes.data(), w.absmax_q.data(), size_t(nb));
    r.push_back(std::move(aq));
    r.push_back(f32_tensor(prefix + ".weight.nested_absmax", {int64_t(w.nested_absmax.size())}, w.nested_absmax));
    const auto& dyn = bnb_dynamic_map();
    r.push_back(f32_tensor(prefix + ".weight.nested_quant_map", {256}, std::vector<float>(dyn.begin(), dyn.end())));
    qs["nested_blocksize"] = w.nested_blocksize;
    qs["nested_offset"] = double(w.offset);
    qs["nested_dtype"] = "float32";
  } else {
    r.push_back(f32_tensor(prefix + ".weight.absmax", {nb}, w.absmax));
  }
  const std::string text = qs.dump();
  EncodedTensor q = make_tensor(prefix + ".weight.quant_state.bitsandbytes__nf4", DType::U8, {int64_t(text.size())});
  std::memcpy(q.bytes.data(), text.data(), text.size());
  r.push_back(std::move(q));
  return r;
}

std::vector<EncodedTensor> encode_ct_fp8(const Fp8Weight& w, const std::string& prefix) {
  validate(w, prefix);
  std::vector<EncodedTensor> r;
  EncodedTensor wt = make_tensor(prefix + ".weight", DType::F8_E4M3, {w.out, w.in});
  std::memcpy(wt.bytes.data(), w.w.data(), w.w.size());
  r.push_back(std::move(wt));
  if (w.per_channel) r.push_back(f32_tensor(prefix + ".weight_scale", {w.out, 1}, w.scale));
  else r.push_back(f32_tensor(prefix + ".weight_scale", {1}, w.scale));
  if (w.input_scale) r.push_back(f32_tensor(prefix + ".input_scale", {1}, {*w.input_scale}));
  return r;
}

// ---- writer -------------------------------------------------------------------------

struct QuantizedCheckpointWriter::Impl {
  std::string src_dir, out_dir;
  Options opt;
  SafeTensors src;
  json config;
  std::map<std::string, std::vector<EncodedTensor>> layers;  // prefix -> encoded tensors
  // GPTQ: zeros kept until finish() (v1 vs v2 is decided over all layers).
  struct GptqZeros { std::vector<float> zeros; int64_t G, N; int bits; };
  std::map<std::string, GptqZeros> gptq_zeros;
  bool gptq_v2 = false;
  // Format-level settings fixed by the first layer.
  bool have_first = false;
  int bits = 0;
  int64_t group_size = 0;  // -1 = per channel
  bool sym = true, desc_act = false;
  bool per_channel = true, has_input_scale = false, w8a8 = true;
  int64_t blocksize = 0, nested_blocksize = 0;
  bool double_quant = false;
  bool finished = false;

  // The source tensor a layer replaces; a tied lm_head (no lm_head.weight) is the
  // embedding matrix, quantized into a separate lm_head (finish() unties the config).
  std::string source_weight(const std::string& prefix) const {
    if (!src.has(prefix + ".weight") && prefix == "lm_head" && src.has("model.embed_tokens.weight"))
      return "model.embed_tokens.weight";
    return prefix + ".weight";
  }
  void check_new(const std::string& prefix) {
    LQ_CHECK(!finished, "{}: QuantizedCheckpointWriter: add('{}') after finish()", out_dir, prefix);
    LQ_CHECK(!layers.count(prefix), "{}: layer '{}' added twice", out_dir, prefix);
    LQ_CHECK(src.has(source_weight(prefix)), "{}: layer '{}' has no '{}.weight' in the source checkpoint {}",
             out_dir, prefix, prefix, src_dir);
  }
  void check_shape(const std::string& prefix, int64_t out, int64_t in) {
    const TensorInfo& t = src.get(source_weight(prefix));
    LQ_CHECK(t.shape == (std::vector<int64_t>{out, in}),
             "{}: layer '{}' is [{}, {}] but the source tensor '{}.weight' is {}", out_dir, prefix, out, in, prefix,
             t.shape_str());
  }
  template <typename T>
  void agree(const char* what, const std::string& prefix, const T& have, const T& got) {
    if (!(have == got))
      fail("{}: layer '{}' has {} = {}, but earlier layers have {}; a checkpoint holds one setting", out_dir, prefix,
           what, got, have);
  }
};

QuantizedCheckpointWriter::QuantizedCheckpointWriter(const std::string& src_dir, const std::string& out_dir,
                                                     Options opt)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.src_dir = src_dir;
  m.out_dir = out_dir;
  m.opt = std::move(opt);
  std::error_code ec;
  if (fs::exists(out_dir) && fs::exists(src_dir) && fs::equivalent(src_dir, out_dir, ec))
    fail("{}: the output directory is the source model directory", out_dir);
  m.src = SafeTensors::open(src_dir);
  const std::string cfg_path = src_dir + "/config.json";
  std::ifstream f(cfg_path, std::ios::binary);
  if (!f) fail("{}: cannot read config.json of the source model", cfg_path);
  std::stringstream ss;
  ss << f.rdbuf();
  m.config = parse_json(ss.str(), cfg_path);
  if (!m.config.is_object()) fail("{}: top level is not a JSON object", cfg_path);
  if (m.config.contains("quantization_config") && !m.config["quantization_config"].is_null())
    fail("{}: the source model is already quantized (quantization_config present)", cfg_path);
  if (!m.opt.settings.is_object()) fail("QuantizedCheckpointWriter: settings must be a JSON object");
}

QuantizedCheckpointWriter::~QuantizedCheckpointWriter() = default;

int64_t QuantizedCheckpointWriter::layers_added() const { return int64_t(impl_->layers.size()); }

void QuantizedCheckpointWriter::add(const std::string& prefix, const AffineGroups& w) {
  Impl& m = *impl_;
  const CheckpointFormat f = m.opt.format;
  LQ_CHECK(f == CheckpointFormat::Gptq || f == CheckpointFormat::Awq || f == CheckpointFormat::CtPacked,
           "{}: layer '{}': affine int weights cannot be written as {}", m.out_dir, prefix, format_name(f));
  m.check_new(prefix);
  m.check_shape(prefix, w.out, w.in);
  const bool act = !trivial_g_idx(w);
  // Layers whose group covers the whole row are per-channel unless a group size was requested.
  int64_t gs = w.group_size;
  if (m.opt.settings.contains("group_size") && m.opt.settings["group_size"].is_number_integer()) {
    const int64_t want = m.opt.settings["group_size"].get<int64_t>();
    // A group at least as wide as the row is one group per row: the same layout as any
    // requested group size >= in (a 64-wide layer under group_size 128).
    const bool whole_row = w.group_size >= w.in;
    LQ_CHECK(want == -1 ? whole_row : (w.group_size == want || (whole_row && want >= w.in)),
             "{}: layer '{}' has group_size {} but settings.group_size is {}", m.out_dir, prefix, w.group_size, want);
    gs = want;
  } else if (w.group_size == w.in) {
    gs = -1;
  }
  if (!m.have_first) {
    m.have_first = true;
    m.bits = w.bits;
    m.group_size = gs;
    m.sym = w.sym;
  } else {
    m.agree("bits", prefix, m.bits, w.bits);
    m.agree("group_size", prefix, m.group_size, gs);
    m.agree("sym", prefix, m.sym, w.sym);
  }
  m.desc_act = m.desc_act || act;
  if (f == CheckpointFormat::Gptq) {
    auto enc = encode_gptq(w, prefix, /*gptq_v2=*/gptq_needs_v2(w));
    m.gptq_v2 = m.gptq_v2 || gptq_needs_v2(w);
    m.gptq_zeros[prefix] = {w.zeros, groups_of(w), w.out, w.bits};
    m.layers[prefix] = std::move(enc);
  } else if (f == CheckpointFormat::Awq) {
    m.layers[prefix] = encode_awq(w, prefix);
  } else {
    m.layers[prefix] = encode_ct_packed(w, prefix);
  }
}

void QuantizedCheckpointWriter::add(const std::string& prefix, const Nf4Blocks& w) {
  Impl& m = *impl_;
  LQ_CHECK(m.opt.format == CheckpointFormat::BnbNf4, "{}: layer '{}': NF4 weights cannot be written as {}",
           m.out_dir, prefix, format_name(m.opt.format));
  m.check_new(prefix);
  m.check_shape(prefix, w.out, w.in);
  if (!m.have_first) {
    m.have_first = true;
    m.blocksize = w.blocksize;
    m.double_quant = w.double_quant;
    m.nested_blocksize = w.nested_blocksize;
  } else {
    m.agree("blocksize", prefix, m.blocksize, w.blocksize);
    m.agree("double_quant", prefix, m.double_quant, w.double_quant);
  }
  std::string dt = m.config.value("torch_dtype", std::string("bfloat16"));
  if (dt != "float16" && dt != "float32") dt = "bfloat16";
  m.layers[prefix] = encode_bnb_nf4(w, prefix, dt);
}

void QuantizedCheckpointWriter::add(const std::string& prefix, const Fp8Weight& w) {
  Impl& m = *impl_;
  LQ_CHECK(m.opt.format == CheckpointFormat::CtFp8, "{}: layer '{}': FP8 weights cannot be written as {}", m.out_dir,
           prefix, format_name(m.opt.format));
  m.check_new(prefix);
  m.check_shape(prefix, w.out, w.in);
  if (!m.have_first) {
    m.have_first = true;
    m.per_channel = w.per_channel;
    m.has_input_scale = w.input_scale.has_value();
    m.w8a8 = w.w8a8;
  } else {
    m.agree("per_channel", prefix, m.per_channel, w.per_channel);
    m.agree("static input_scale", prefix, m.has_input_scale, w.input_scale.has_value());
    m.agree("w8a8", prefix, m.w8a8, w.w8a8);
  }
  LQ_CHECK(w.w8a8 || !w.input_scale, "{}: layer '{}' has an input_scale but no activation quantization", m.out_dir,
           prefix);
  m.layers[prefix] = encode_ct_fp8(w, prefix);
}

void QuantizedCheckpointWriter::finish() {
  Impl& m = *impl_;
  LQ_CHECK(!m.finished, "{}: QuantizedCheckpointWriter::finish() called twice", m.out_dir);
  LQ_CHECK(!m.layers.empty(), "{}: no quantized layers were added", m.out_dir);
  m.finished = true;
  const CheckpointFormat f = m.opt.format;
  const json& S = m.opt.settings;

  if (f == CheckpointFormat::Gptq) {
    for (auto& [prefix, enc] : m.layers) {
      const auto& z = m.gptq_zeros.at(prefix);
      for (EncodedTensor& e : enc)
        if (e.name == prefix + ".qzeros") e = encode_gptq_qzeros(prefix, z.zeros, z.G, z.N, z.bits, m.gptq_v2);
    }
  }
  const bool lm_head = m.layers.count("lm_head") > 0;

  // quantization_config.
  json qc;
  if (f == CheckpointFormat::Gptq) {
    qc = {{"quant_method", "gptq"}, {"bits", m.bits}, {"group_size", m.group_size}, {"desc_act", m.desc_act},
          {"sym", m.sym}, {"checkpoint_format", m.gptq_v2 ? "gptq_v2" : "gptq"}, {"lm_head", lm_head}};
    for (const char* k : {"damp_percent", "true_sequential", "static_groups"})
      if (S.contains(k)) qc[k] = S[k];
  } else if (f == CheckpointFormat::Awq) {
    qc = {{"quant_method", "awq"}, {"bits", m.bits}, {"group_size", m.group_size}, {"version", "gemm"},
          {"zero_point", true}};
    if (!lm_head) qc["modules_to_not_convert"] = json::array({"lm_head"});
  } else if (f == CheckpointFormat::BnbNf4) {
    std::string dt = m.config.value("torch_dtype", std::string("bfloat16"));
    if (dt != "float16" && dt != "float32") dt = "bfloat16";
    qc = {{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}, {"load_in_8bit", false},
          {"bnb_4bit_quant_type", "nf4"}, {"bnb_4bit_use_double_quant", m.double_quant},
          {"bnb_4bit_compute_dtype", dt}, {"bnb_4bit_quant_storage", "uint8"}};
    if (!lm_head) qc["llm_int8_skip_modules"] = json::array({"lm_head"});
  } else {
    json weights, acts = nullptr;
    std::string fmt_name;
    if (f == CheckpointFormat::CtFp8) {
      fmt_name = "float-quantized";
      weights = {{"num_bits", 8}, {"type", "float"}, {"strategy", m.per_channel ? "channel" : "tensor"},
                 {"symmetric", true}, {"dynamic", false}, {"group_size", nullptr}, {"actorder", nullptr},
                 {"observer", "minmax"}, {"block_structure", nullptr}};
      if (m.w8a8)
        acts = {{"num_bits", 8}, {"type", "float"}, {"strategy", m.has_input_scale ? "tensor" : "token"},
                {"symmetric", true}, {"dynamic", !m.has_input_scale}, {"group_size", nullptr},
                {"observer", m.has_input_scale ? json("minmax") : json(nullptr)}};
    } else {
      fmt_name = "pack-quantized";
      weights = {{"num_bits", m.bits}, {"type", "int"}, {"strategy", m.group_size == -1 ? "channel" : "group"},
                 {"group_size", m.group_size == -1 ? json(nullptr) : json(m.group_size)}, {"symmetric", m.sym},
                 {"dynamic", false}, {"actorder", m.desc_act ? json("group") : json(nullptr)},
                 {"observer", "minmax"}};
    }
    json ignore = json::array();
    if (!lm_head) ignore.push_back("lm_head");
    qc = {{"quant_method", "compressed-tensors"}, {"format", fmt_name}, {"quantization_status", "compressed"},
          {"config_groups",
           {{"group_0", {{"targets", {"Linear"}}, {"weights", weights}, {"input_activations", acts},
                         {"output_activations", nullptr}, {"format", fmt_name}}}}},
          {"ignore", ignore}, {"kv_cache_scheme", nullptr}};
  }
  qc["longquant"] = S;
  json cfg = m.config;
  cfg["quantization_config"] = qc;
  if (lm_head) cfg["tie_word_embeddings"] = false;

  // Tensors: the source's minus replaced weights, plus the encoded ones.
  std::set<std::string> replaced;
  for (auto& [prefix, enc] : m.layers) replaced.insert(prefix + ".weight");
  std::vector<TensorToWrite> out;
  std::set<std::string> names;
  for (const std::string& n : m.src.names()) {
    if (replaced.count(n)) continue;
    const TensorInfo& t = m.src.get(n);
    out.push_back({n, t.dtype, t.shape, t.data});
    names.insert(n);
  }
  for (auto& [prefix, enc] : m.layers)
    for (const EncodedTensor& e : enc) {
      LQ_CHECK(!names.count(e.name), "{}: tensor '{}' of layer '{}' already exists in the source checkpoint",
               m.out_dir, e.name, prefix);
      names.insert(e.name);
      out.push_back({e.name, e.dtype, e.shape, e.bytes.data()});
    }
  std::error_code ec;
  fs::create_directories(m.out_dir, ec);
  if (ec) fail("{}: cannot create the output directory: {}", m.out_dir, ec.message());
  write_safetensors(m.out_dir + "/model.safetensors", out, {{"format", "pt"}});

  auto write_text = [&](const std::string& name, const std::string& text) {
    const std::string path = m.out_dir + "/" + name;
    const std::string tmp = path + ".tmp";
    {
      std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
      if (!o) fail("{}: cannot open for writing", tmp);
      o << text;
      if (!o) fail("{}: write failed", tmp);
    }
    fs::rename(tmp, path, ec);
    if (ec) fail("{}: cannot rename to {}: {}", tmp, path, ec.message());
  };
  write_text("config.json", cfg.dump(2) + "\n");
  if (f == CheckpointFormat::Gptq) {
    json qcf = qc;
    qcf.erase("lm_head");
    qcf["lm_head"] = lm_head;
    write_text("quantize_config.json", qcf.dump(2) + "\n");
  }
  // A stale shard index from an earlier run would shadow model.safetensors.
  fs::remove(m.out_dir + "/model.safetensors.index.json", ec);
  if (m.opt.copy_tokenizer) {
    for (const char* n : {"generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                          "special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.jinja",
                          "chat_template.json"}) {
      const fs::path s = fs::path(m.src_dir) / n;
      if (!fs::exists(s)) continue;
      const fs::path d = fs::path(m.out_dir) / n;
      fs::copy_file(s, d, fs::copy_options::overwrite_existing, ec);
      if (ec) fail("{}: cannot copy {} to {}: {}", m.out_dir, s.string(), d.string(), ec.message());
      fs::permissions(d, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add, ec);
    }
  }
}

}  // namespace lq::quant
