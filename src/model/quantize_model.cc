#include "core/version.h"
#include "model/quantize_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "core/dtype.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "core/threads.h"
#include "io/safetensors.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"
#include "quant/algo_awq.h"
#include "quant/algo_common.h"
#include "quant/algo_fp8.h"
#include "quant/algo_gptq.h"
#include "quant/algo_nf4.h"
#include "quant/algo_rtn.h"
#include "quant/checkpoint.h"

namespace lq {

using json = nlohmann::json;
using quant::AffineGroups;

// ---------------------------------------------------------------------------
// Methods

namespace {
struct MethodInfo {
  QuantMethod m;
  const char* name;
};
constexpr MethodInfo kMethods[] = {{QuantMethod::Fp8, "fp8"},           {QuantMethod::GptqInt8, "gptq-int8"},
                                   {QuantMethod::GptqInt4, "gptq-int4"}, {QuantMethod::AwqInt4, "awq-int4"},
                                   {QuantMethod::Nf4, "nf4"},            {QuantMethod::RtnInt8, "rtn-int8"},
                                   {QuantMethod::RtnInt4, "rtn-int4"}};

int method_bits(QuantMethod m) {
  switch (m) {
    case QuantMethod::GptqInt8:
    case QuantMethod::RtnInt8:
    case QuantMethod::Fp8: return 8;
    default: return 4;
  }
}
bool is_gptq(QuantMethod m) { return m == QuantMethod::GptqInt8 || m == QuantMethod::GptqInt4; }
bool is_rtn(QuantMethod m) { return m == QuantMethod::RtnInt8 || m == QuantMethod::RtnInt4; }
}  // namespace

QuantMethod parse_quant_method(std::string_view s) {
  for (const auto& i : kMethods)
    if (s == i.name) return i.m;
  std::string names;
  for (const auto& i : kMethods) names += std::string(names.empty() ? "" : ", ") + i.name;
  fail("unknown quantization method '{}' (expected one of: {})", s, names);
}

std::string_view quant_method_name(QuantMethod m) {
  for (const auto& i : kMethods)
    if (i.m == m) return i.name;
  return "?";
}

std::vector<std::string> quant_method_names() {
  std::vector<std::string> v;
  for (const auto& i : kMethods) v.push_back(i.name);
  return v;
}

bool method_needs_calibration(QuantMethod m) { return is_gptq(m) || m == QuantMethod::AwqInt4; }

json quantize_settings(const QuantizeOptions& o, const quant::CalibData* calib) {
  json s = {{"method", std::string(quant_method_name(o.method))},
            {"bits", method_bits(o.method)},
            {"quantize_lm_head", o.quantize_lm_head},
            {"embeddings", "unquantized (bf16)"},
            {"longquant_version", std::string(LQ_VERSION) + " (" + lq::git_hash() + ")"}};
  if (is_gptq(o.method) || is_rtn(o.method)) {
    s["group_size"] = o.group_size;
    s["sym"] = !o.asym;
    s["scale_rounding"] = "f16 at computation";
  }
  if (is_gptq(o.method)) {
    s["desc_act"] = o.act_order;
    s["static_groups"] = o.static_groups;
    s["damp_percent"] = o.damp;
    s["damp_retry_factor"] = 10;
    s["block_size"] = 128;
    s["true_sequential"] = true;
    s["hessian"] = "2 X^T X / n, double accumulation; q/k/v and gate/up share theirs";
  }
  if (o.method == QuantMethod::AwqInt4) {
    quant::AwqOptions a;
    s["group_size"] = o.group_size;
    s["zero_point"] = true;
    s["version"] = "gemm";
    s["n_grid"] = a.n_grid;
    s["duo_scaling"] = a.duo_scaling;
    s["clip"] = {{"n_grid", a.clip_grid}, {"max_shrink", a.max_shrink}, {"n_sample_token", a.clip_tokens},
                 {"skip", {"q_proj", "k_proj"}}};
    s["scale_groups"] = "input_layernorm->q/k/v, v->o (when shapes allow), post_attention_layernorm->gate/up, up->down";
    s["loss_numerics"] = "bf16 matmul inputs and weights, fp32 accumulation";
  }
  if (o.method == QuantMethod::Nf4) {
    s["blocksize"] = 64;
    s["double_quant"] = true;
    s["nested_blocksize"] = 256;
  }
  if (o.method == QuantMethod::Fp8) {
    s["weights"] = "E4M3FN, per output channel, scale absmax/448 (fp32)";
    s["activations"] = "dynamic per token (at run time)";
  }
  if (calib) {
    s["calibration"] = {{"source", calib->source},
                        {"samples", int64_t(calib->seqs.size())},
                        {"len", calib->seqs.empty() ? 0 : int64_t(calib->seqs[0].size())},
                        {"seed", o.calib.seed},
                        {"file", o.calib.file},
                        {"corpus_tokens", calib->corpus_tokens},
                        {"description", calib->description}};
  }
  return s;
}

// ---------------------------------------------------------------------------
// Layer plumbing

namespace {

using LinFn = std::function<void(const float* X, int64_t M, float* Y)>;

struct Rope {
  std::vector<float> cos, sin;
};

// RoPE tables for positions 0..T-1, computed exactly as model.cc does.
Rope make_rope(const Model& m, int64_t T) {
  const int64_t half = m.config().head_dim / 2;
  Rope r;
  r.cos.resize(size_t(T * half));
  r.sin.resize(size_t(T * half));
  const std::vector<float>& inv = m.inv_freq();
  const double af = m.rope_attention_factor();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const float ang = inv[size_t(i)] * float(t);
      r.cos[size_t(t * half + i)] = float(std::cos(double(ang)) * af);
      r.sin[size_t(t * half + i)] = float(std::sin(double(ang)) * af);
    }
  return r;
}

// fp32 linear with owned weights (dequantized or fp32 source) and optional bias.
struct DenseLin {
  int64_t out = 0, in = 0;
  std::vector<float> w, b;
  void forward(const float* X, int64_t M, float* Y) const {
    quant::sgemm_abt(M, out, in, 1.0f, X, in, w.data(), in, 0.0f, Y, out);
    if (!b.empty())
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < out; ++j) Y[i * out + j] += b[size_t(j)];
  }
  LinFn fn() const {
    return [this](const float* X, int64_t M, float* Y) { forward(X, M, Y); };
  }
};

// bf16-weight linear used for AWQ's losses (bf16 inputs, fp32 accumulation).
struct Bf16Lin {
  int64_t out = 0, in = 0;
  std::vector<uint16_t> w;
  const std::vector<float>* b = nullptr;
  void set(const std::vector<float>& wf, int64_t o, int64_t i) {
    out = o;
    in = i;
    w.resize(wf.size());
    cpu::f32_to_bf16_n(wf.data(), int64_t(wf.size()), w.data());
  }
  void forward(const float* X, int64_t M, float* Y) const {
    cpu::matmul_bf16w(X, M, in, w.data(), out, Y, Precision::BF16);
    if (b && !b->empty())
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < out; ++j) Y[i * out + j] += (*b)[size_t(j)];
  }
  LinFn fn() const {
    return [this](const float* X, int64_t M, float* Y) { forward(X, M, Y); };
  }
};

LinFn model_lin(const Linear& l) {
  return [&l](const float* X, int64_t M, float* Y) { l.forward(X, M, Y, Precision::F32); };
}

// Attention of one sequence (positions 0..T-1): h [T,H] normed input -> att [T, q_dim]
// (before o_proj). fp32 KV.
void attention_block(const ModelConfig& c, const Rope& r, const float* h, int64_t T, const LinFn& q, const LinFn& k,
                     const LinFn& v, float* att) {
  const int64_t D = c.head_dim, Hq = c.num_heads, Hkv = c.num_kv_heads, QD = c.q_dim(), KVD = c.kv_dim();
  std::vector<float> qb(static_cast<size_t>(T * QD)), kb(static_cast<size_t>(T * KVD)), vb(static_cast<size_t>(T * KVD));
  q(h, T, qb.data());
  k(h, T, kb.data());
  v(h, T, vb.data());
  cpu::rope_apply(qb.data(), T, Hq, D, r.cos.data(), r.sin.data());
  cpu::rope_apply(kb.data(), T, Hkv, D, r.cos.data(), r.sin.data());
  std::vector<float> K(static_cast<size_t>(Hkv * T * D)), V(static_cast<size_t>(Hkv * T * D));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t hh = 0; hh < Hkv; ++hh) {
      std::memcpy(K.data() + (hh * T + t) * D, kb.data() + t * KVD + hh * D, size_t(D) * 4);
      std::memcpy(V.data() + (hh * T + t) * D, vb.data() + t * KVD + hh * D, size_t(D) * 4);
    }
  cpu::KVView kv;
  kv.k = K.data();
  kv.v = V.data();
  kv.bf16 = false;
  kv.head_stride = T * D;
  cpu::attention_causal(qb.data(), T, Hq, Hkv, D, kv, 0, float(1.0 / std::sqrt(double(D))), att, Precision::F32);
}

// silu(gate(h)) * up(h) -> g [T, I]
void mlp_act(const ModelConfig& c, const float* h, int64_t T, const LinFn& gate, const LinFn& up, float* g) {
  std::vector<float> u(static_cast<size_t>(T * c.intermediate_size));
  gate(h, T, g);
  up(h, T, u.data());
  cpu::silu_mul(g, u.data(), T * c.intermediate_size, g);
}

struct LayerNames {
  std::string p;
  std::string q, k, v, o, gate, up, down, attn_norm, mlp_norm;
  explicit LayerNames(int64_t l) : p("model.layers." + std::to_string(l)) {
    q = p + ".self_attn.q_proj";
    k = p + ".self_attn.k_proj";
    v = p + ".self_attn.v_proj";
    o = p + ".self_attn.o_proj";
    gate = p + ".mlp.gate_proj";
    up = p + ".mlp.up_proj";
    down = p + ".mlp.down_proj";
    attn_norm = p + ".input_layernorm.weight";
    mlp_norm = p + ".post_attention_layernorm.weight";
  }
};

// Reads float weights of the source checkpoint.
struct Source {
  SafeTensors st;
  const ModelConfig* cfg = nullptr;
  std::vector<float> weight(const std::string& prefix, int64_t out, int64_t in) const {
    const std::string n = prefix + ".weight";
    Bf16Tensor t = bf16_weight(st, n, {out, in});
    const uint16_t* p = t.owned.empty() ? t.ptr : t.owned.data();
    std::vector<float> w(static_cast<size_t>(out * in));
    cpu::bf16_to_f32_n(p, out * in, w.data());
    return w;
  }
  std::vector<float> bias(const std::string& prefix, int64_t out, bool has) const {
    if (!has) return {};
    const std::string n = prefix + ".bias";
    const TensorInfo& t = st.get(n);
    LQ_CHECK(t.numel() == out, "{}: tensor '{}' has shape {}, expected [{}]", t.file, n, t.shape_str(), out);
    return tensor_to_f32(t);
  }
};

// Rows [r0, r1) of an affine weight (scales/zeros are [G][N]).
AffineGroups slice_rows(const AffineGroups& a, int64_t r0, int64_t r1) {
  AffineGroups s;
  s.bits = a.bits;
  s.out = r1 - r0;
  s.in = a.in;
  s.group_size = a.group_size;
  s.sym = a.sym;
  s.g_idx = a.g_idx;
  s.q.assign(a.q.begin() + r0 * a.in, a.q.begin() + r1 * a.in);
  const int64_t G = a.n_groups();
  s.scales.resize(size_t(G * s.out));
  s.zeros.resize(size_t(G * s.out));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = r0; n < r1; ++n) {
      s.scales[size_t(g * s.out + n - r0)] = a.scales[size_t(g * a.out + n)];
      s.zeros[size_t(g * s.out + n - r0)] = a.zeros[size_t(g * a.out + n)];
    }
  return s;
}

std::vector<float> concat_rows(std::initializer_list<const std::vector<float>*> parts) {
  std::vector<float> r;
  for (auto* p : parts) r.insert(r.end(), p->begin(), p->end());
  return r;
}

double mse(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s;
}

class Quantizer {
 public:
  Quantizer(const Model& m, const QuantizeOptions& o, const quant::CalibData* calib, const QuantizeSink& sink)
      : m_(m), c_(m.config()), o_(o), calib_(calib), sink_(sink) {
    src_.st = SafeTensors::open(m.dir());
    src_.cfg = &c_;
    LQ_CHECK(c_.quantization_method.empty(), "{}: the model is already quantized ({}); quantize needs a float checkpoint",
             m.dir(), c_.quantization_method);
  }

  QuantizeSummary run();

 private:
  // Non-calibrated methods: quantize one linear from its fp32 weights.
  void emit_plain(const std::string& prefix, const std::vector<float>& w, int64_t out, int64_t in);
  void emit_affine(const std::string& prefix, const AffineGroups& a) { sink_.affine(prefix, a); }
  DenseLin dense_from(const AffineGroups& a, std::vector<float> bias) const {
    DenseLin d;
    d.out = a.out;
    d.in = a.in;
    d.w = quant::dequantize_affine_f32(a);
    d.b = std::move(bias);
    return d;
  }
  quant::GptqOptions gptq_opts() const {
    quant::GptqOptions g;
    g.bits = method_bits(o_.method);
    g.group_size = o_.group_size;
    g.sym = !o_.asym;
    g.act_order = o_.act_order;
    g.static_groups = o_.static_groups;
    g.damp = o_.damp;
    return g;
  }
  quant::AwqOptions awq_opts() const {
    quant::AwqOptions a;
    a.group_size = o_.group_size;
    return a;
  }
  json layer_plain(int64_t l);
  json layer_gptq(int64_t l);
  json layer_awq(int64_t l);
  void lm_head();

  const Model& m_;
  const ModelConfig& c_;
  const QuantizeOptions& o_;
  const quant::CalibData* calib_;
  const QuantizeSink& sink_;
  Source src_;
  Rope rope_;
  int64_t S_ = 0, T_ = 0;
  std::vector<float> X_;  // [S*T][H] hidden states entering the current layer
};

void Quantizer::emit_plain(const std::string& prefix, const std::vector<float>& w, int64_t out, int64_t in) {
  switch (o_.method) {
    case QuantMethod::Fp8: sink_.fp8(prefix, quant::quantize_fp8(w.data(), out, in, quant::ScaleStorage::F32)); break;
    case QuantMethod::Nf4: sink_.nf4(prefix, quant::quantize_nf4(w.data(), out, in, quant::Nf4Options{})); break;
    case QuantMethod::RtnInt4:
    case QuantMethod::RtnInt8:
      sink_.affine(prefix, quant::quantize_rtn(w.data(), out, in,
                                               {method_bits(o_.method), o_.group_size, !o_.asym, quant::ScaleStorage::F16}));
      break;
    default: LQ_ASSERT(false);
  }
}

json Quantizer::layer_plain(int64_t l) {
  const LayerNames n(l);
  const int64_t H = c_.hidden_size, I = c_.intermediate_size, QD = c_.q_dim(), KVD = c_.kv_dim();
  const std::pair<const std::string*, std::pair<int64_t, int64_t>> lins[] = {
      {&n.q, {QD, H}}, {&n.k, {KVD, H}}, {&n.v, {KVD, H}}, {&n.o, {H, QD}},
      {&n.gate, {I, H}}, {&n.up, {I, H}}, {&n.down, {H, I}}};
  for (const auto& [name, shape] : lins) emit_plain(*name, src_.weight(*name, shape.first, shape.second), shape.first, shape.second);
  return json::object();
}

// ---- GPTQ ----------------------------------------------------------------------

json Quantizer::layer_gptq(int64_t l) {
  const LayerNames n(l);
  const LayerWeights& L = m_.layer(l);
  const int64_t H = c_.hidden_size, I = c_.intermediate_size, QD = c_.q_dim(), KVD = c_.kv_dim();
  const int64_t S = S_, T = T_;
  const float eps = float(c_.rms_norm_eps);
  const quant::GptqOptions go = gptq_opts();
  json info = json::object();
  auto run_gptq = [&](const char* what, std::vector<float> W, int64_t out, int64_t in, quant::Hessian& h) {
    const auto t0 = std::chrono::steady_clock::now();
    quant::GptqResult r = quant::gptq_quantize(W.data(), out, in, h.take_matrix(), go);
    info[what] = {{"loss", r.loss}, {"damp", r.damp_used}, {"damp_retries", r.damp_retries},
                  {"dead_columns", r.dead_columns},
                  {"gptq_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
    return std::move(r.w);
  };
  std::vector<float> h(static_cast<size_t>(T * std::max(H, I)));

  // q/k/v: input = input_layernorm(x)
  quant::Hessian hqkv(H);
  for (int64_t s = 0; s < S; ++s) {
    cpu::rmsnorm(X_.data() + s * T * H, L.attn_norm.data(), eps, T, H, h.data());
    hqkv.add(h.data(), T);
  }
  AffineGroups qkv;
  {
    const std::vector<float> wq = src_.weight(n.q, QD, H), wk = src_.weight(n.k, KVD, H), wv = src_.weight(n.v, KVD, H);
    qkv = run_gptq("qkv", concat_rows({&wq, &wk, &wv}), QD + 2 * KVD, H, hqkv);
  }
  const AffineGroups aq = slice_rows(qkv, 0, QD), ak = slice_rows(qkv, QD, QD + KVD),
                     av = slice_rows(qkv, QD + KVD, QD + 2 * KVD);
  qkv = AffineGroups();
  emit_affine(n.q, aq);
  emit_affine(n.k, ak);
  emit_affine(n.v, av);
  const DenseLin dq = dense_from(aq, src_.bias(n.q, QD, c_.attention_bias));
  const DenseLin dk = dense_from(ak, src_.bias(n.k, KVD, c_.attention_bias));
  const DenseLin dv = dense_from(av, src_.bias(n.v, KVD, c_.attention_bias));

  // o: input = attention output with the quantized q/k/v
  std::vector<float> att(static_cast<size_t>(S * T * QD));
  quant::Hessian ho(QD);
  for (int64_t s = 0; s < S; ++s) {
    cpu::rmsnorm(X_.data() + s * T * H, L.attn_norm.data(), eps, T, H, h.data());
    float* a = att.data() + s * T * QD;
    attention_block(c_, rope_, h.data(), T, dq.fn(), dk.fn(), dv.fn(), a);
    ho.add(a, T);
  }
  const AffineGroups ao = run_gptq("o", src_.weight(n.o, H, QD), H, QD, ho);
  emit_affine(n.o, ao);
  const DenseLin dout = dense_from(ao, src_.bias(n.o, H, c_.o_bias));

  // gate/up: input = post_attention_layernorm(x + o(att))
  quant::Hessian hgu(H);
  for (int64_t s = 0; s < S; ++s) {
    float* x = X_.data() + s * T * H;
    dout.forward(att.data() + s * T * QD, T, h.data());
    cpu::add_inplace(x, h.data(), T * H);
    cpu::rmsnorm(x, L.mlp_norm.data(), eps, T, H, h.data());
    hgu.add(h.data(), T);
  }
  att = {};
  AffineGroups gu;
  {
    const std::vector<float> wg = src_.weight(n.gate, I, H), wu = src_.weight(n.up, I, H);
    gu = run_gptq("gate_up", concat_rows({&wg, &wu}), 2 * I, H, hgu);
  }
  const AffineGroups ag = slice_rows(gu, 0, I), au = slice_rows(gu, I, 2 * I);
  gu = AffineGroups();
  emit_affine(n.gate, ag);
  emit_affine(n.up, au);
  const DenseLin dg = dense_from(ag, src_.bias(n.gate, I, c_.mlp_bias));
  const DenseLin du = dense_from(au, src_.bias(n.up, I, c_.mlp_bias));

  // down: input = silu(gate) * up of the quantized gate/up
  std::vector<float> G(static_cast<size_t>(S * T * I));
  quant::Hessian hd(I);
  for (int64_t s = 0; s < S; ++s) {
    cpu::rmsnorm(X_.data() + s * T * H, L.mlp_norm.data(), eps, T, H, h.data());
    float* g = G.data() + s * T * I;
    mlp_act(c_, h.data(), T, dg.fn(), du.fn(), g);
    hd.add(g, T);
  }
  const AffineGroups ad = run_gptq("down", src_.weight(n.down, H, I), H, I, hd);
  emit_affine(n.down, ad);
  const DenseLin ddown = dense_from(ad, src_.bias(n.down, H, c_.mlp_bias));
  // The next layer's input comes from the quantized layer.
  for (int64_t s = 0; s < S; ++s) {
    ddown.forward(G.data() + s * T * I, T, h.data());
    cpu::add_inplace(X_.data() + s * T * H, h.data(), T * H);
  }
  return info;
}

// ---- AWQ -----------------------------------------------------------------------

json Quantizer::layer_awq(int64_t l) {
  const LayerNames n(l);
  const LayerWeights& L = m_.layer(l);
  const int64_t H = c_.hidden_size, I = c_.intermediate_size, QD = c_.q_dim(), KVD = c_.kv_dim();
  const int64_t S = S_, T = T_, ST = S * T;
  const float eps = float(c_.rms_norm_eps);
  const quant::AwqOptions ao = awq_opts();
  quant::awq_check_shape(H, ao, "the hidden size");
  quant::awq_check_shape(QD, ao, "o_proj's input (heads x head_dim)");
  quant::awq_check_shape(I, ao, "the intermediate size");
  json info = json::object();

  // fp32 weights and biases of the layer.
  std::vector<float> Wq = src_.weight(n.q, QD, H), Wk = src_.weight(n.k, KVD, H), Wv = src_.weight(n.v, KVD, H),
                     Wo = src_.weight(n.o, H, QD), Wg = src_.weight(n.gate, I, H), Wu = src_.weight(n.up, I, H),
                     Wd = src_.weight(n.down, H, I);
  std::vector<float> bq = src_.bias(n.q, QD, c_.attention_bias), bk = src_.bias(n.k, KVD, c_.attention_bias),
                     bv = src_.bias(n.v, KVD, c_.attention_bias), bo = src_.bias(n.o, H, c_.o_bias),
                     bg = src_.bias(n.gate, I, c_.mlp_bias), bu = src_.bias(n.up, I, c_.mlp_bias),
                     bd = src_.bias(n.down, H, c_.mlp_bias);

  // Capture every linear's input from the unquantized layer (fp32, as the model runs).
  std::vector<float> H1(static_cast<size_t>(ST * H)), ATT(static_cast<size_t>(ST * QD)), H2(static_cast<size_t>(ST * H)),
      G(static_cast<size_t>(ST * I));
  {
    std::vector<float> tmp(static_cast<size_t>(T * H));
    for (int64_t s = 0; s < S; ++s) {
      float* x = X_.data() + s * T * H;
      float* h1 = H1.data() + s * T * H;
      cpu::rmsnorm(x, L.attn_norm.data(), eps, T, H, h1);
      float* a = ATT.data() + s * T * QD;
      attention_block(c_, rope_, h1, T, model_lin(*L.q), model_lin(*L.k), model_lin(*L.v), a);
      L.o->forward(a, T, tmp.data(), Precision::F32);
      cpu::add_inplace(x, tmp.data(), T * H);
      float* h2 = H2.data() + s * T * H;
      cpu::rmsnorm(x, L.mlp_norm.data(), eps, T, H, h2);
      float* g = G.data() + s * T * I;
      mlp_act(c_, h2, T, model_lin(*L.gate), model_lin(*L.up), g);
      L.down->forward(g, T, tmp.data(), Precision::F32);
      cpu::add_inplace(x, tmp.data(), T * H);  // X_ now holds the next layer's input (unquantized model)
    }
  }

  // Reference outputs of the inspected modules in the loss numerics (bf16 matmuls).
  Bf16Lin lq_, lk_, lv_, lo_, lg_, lu_, ld_;
  lq_.set(Wq, QD, H); lq_.b = &bq;
  lk_.set(Wk, KVD, H); lk_.b = &bk;
  lv_.set(Wv, KVD, H); lv_.b = &bv;
  lo_.set(Wo, H, QD); lo_.b = &bo;
  lg_.set(Wg, I, H); lg_.b = &bg;
  lu_.set(Wu, I, H); lu_.b = &bu;
  ld_.set(Wd, H, I); ld_.b = &bd;
  auto attn_out = [&](const LinFn& q, const LinFn& k, const LinFn& v, const LinFn& o, std::vector<float>& out) {
    out.resize(size_t(ST * H));
    std::vector<float> a(static_cast<size_t>(T * QD));
    for (int64_t s = 0; s < S; ++s) {
      attention_block(c_, rope_, H1.data() + s * T * H, T, q, k, v, a.data());
      o(a.data(), T, out.data() + s * T * H);
    }
  };
  auto mlp_out = [&](const LinFn& g, const LinFn& u, const LinFn& d, std::vector<float>& out) {
    out.resize(size_t(ST * H));
    std::vector<float> act(static_cast<size_t>(T * I));
    for (int64_t s = 0; s < S; ++s) {
      mlp_act(c_, H2.data() + s * T * H, T, g, u, act.data());
      d(act.data(), T, out.data() + s * T * H);
    }
  };
  std::vector<float> O1, O2, cur;
  attn_out(lq_.fn(), lk_.fn(), lv_.fn(), lo_.fn(), O1);
  mlp_out(lg_.fn(), lu_.fn(), ld_.fn(), O2);

  // Scale searches (all on the original weights, as AutoAWQ computes the whole list first).
  auto xm = [&](const std::vector<float>& X, int64_t K) { return quant::awq_x_mean(X.data(), ST, K); };
  const double n_out = double(ST * H);
  quant::AwqScaleResult s_qkv = quant::awq_search_scale(
      {Wq.data(), Wk.data(), Wv.data()}, {QD, KVD, KVD}, H, xm(H1, H), ao, [&](const std::vector<std::vector<float>>& c) {
        Bf16Lin a, b, d;
        a.set(c[0], QD, H); a.b = &bq;
        b.set(c[1], KVD, H); b.b = &bk;
        d.set(c[2], KVD, H); d.b = &bv;
        attn_out(a.fn(), b.fn(), d.fn(), lo_.fn(), cur);
        return mse(cur.data(), O1.data(), ST * H) / n_out;
      });
  const bool vo = KVD == H && QD == H;  // v_proj and o_proj shapes equal (no GQA)
  quant::AwqScaleResult s_vo;
  if (vo) {
    s_vo = quant::awq_search_scale({Wo.data()}, {H}, QD, xm(ATT, QD), ao, [&](const std::vector<std::vector<float>>& c) {
      Bf16Lin o;
      o.set(c[0], H, QD);
      o.b = &bo;
      cur.resize(size_t(ST * H));
      for (int64_t s = 0; s < S; ++s) o.forward(ATT.data() + s * T * QD, T, cur.data() + s * T * H);
      return mse(cur.data(), O1.data(), ST * H) / n_out;
    });
  }
  quant::AwqScaleResult s_gu = quant::awq_search_scale(
      {Wg.data(), Wu.data()}, {I, I}, H, xm(H2, H), ao, [&](const std::vector<std::vector<float>>& c) {
        Bf16Lin a, b;
        a.set(c[0], I, H); a.b = &bg;
        b.set(c[1], I, H); b.b = &bu;
        mlp_out(a.fn(), b.fn(), ld_.fn(), cur);
        return mse(cur.data(), O2.data(), ST * H) / n_out;
      });
  quant::AwqScaleResult s_d = quant::awq_search_scale({Wd.data()}, {H}, I, xm(G, I), ao,
                                                      [&](const std::vector<std::vector<float>>& c) {
                                                        Bf16Lin d;
                                                        d.set(c[0], H, I);
                                                        d.b = &bd;
                                                        cur.resize(size_t(ST * H));
                                                        for (int64_t s = 0; s < S; ++s)
                                                          d.forward(G.data() + s * T * I, T, cur.data() + s * T * H);
                                                        return mse(cur.data(), O2.data(), ST * H) / n_out;
                                                      });
  O1 = {};
  O2 = {};
  cur = {};
  info["ratio"] = {{"qkv", s_qkv.best_ratio}, {"gate_up", s_gu.best_ratio}, {"down", s_d.best_ratio}};
  if (vo) info["ratio"]["vo"] = s_vo.best_ratio;

  // Apply the scales.
  auto scale_cols = [](std::vector<float>& W, int64_t rows, int64_t in, const std::vector<float>& s) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < in; ++k) W[size_t(r * in + k)] *= s[size_t(k)];
  };
  auto div_cols = [](std::vector<float>& X, int64_t rows, int64_t in, const std::vector<float>& s) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < in; ++k) X[size_t(r * in + k)] /= s[size_t(k)];
  };
  // Norm -> linears: the stored norm weight is bf16(norm / s); the linears take the scale
  // that rounded weight realises (norm / stored), so the product is preserved exactly.
  auto fold_norm = [&](const std::vector<uint16_t>& norm, const std::vector<float>& s, const std::string& name) {
    std::vector<uint16_t> nb(norm.size());
    std::vector<float> eff(norm.size());
    for (size_t k = 0; k < norm.size(); ++k) {
      const float w = bf16_to_f32(norm[k]);
      nb[k] = f32_to_bf16(w / s[k]);
      const float stored = bf16_to_f32(nb[k]);
      const float e = w / stored;
      eff[k] = (stored != 0.0f && std::isfinite(e) && e > 0.0f) ? e : s[k];
    }
    sink_.replace_bf16(name, nb);
    return eff;
  };
  const std::vector<float> e1 = fold_norm(L.attn_norm, s_qkv.scales, n.attn_norm);
  scale_cols(Wq, QD, H, e1);
  scale_cols(Wk, KVD, H, e1);
  scale_cols(Wv, KVD, H, e1);
  div_cols(H1, ST, H, e1);
  if (vo) {
    for (int64_t r = 0; r < KVD; ++r) {
      for (int64_t k = 0; k < H; ++k) Wv[size_t(r * H + k)] /= s_vo.scales[size_t(r)];
      if (!bv.empty()) bv[size_t(r)] /= s_vo.scales[size_t(r)];
    }
    scale_cols(Wo, H, QD, s_vo.scales);
    div_cols(ATT, ST, QD, s_vo.scales);
  }
  const std::vector<float> e2 = fold_norm(L.mlp_norm, s_gu.scales, n.mlp_norm);
  scale_cols(Wg, I, H, e2);
  scale_cols(Wu, I, H, e2);
  div_cols(H2, ST, H, e2);
  for (int64_t r = 0; r < I; ++r) {
    for (int64_t k = 0; k < H; ++k) Wu[size_t(r * H + k)] /= s_d.scales[size_t(r)];
    if (!bu.empty()) bu[size_t(r)] /= s_d.scales[size_t(r)];
  }
  scale_cols(Wd, H, I, s_d.scales);
  div_cols(G, ST, I, s_d.scales);
  // Biases of rows that were divided by a scale replace the source's (bf16, like the source).
  auto replace_bias = [&](const std::string& prefix, const std::vector<float>& b) {
    std::vector<uint16_t> v(b.size());
    for (size_t i = 0; i < b.size(); ++i) v[i] = f32_to_bf16(b[i]);
    sink_.replace_bf16(prefix + ".bias", v);
  };
  if (vo && !bv.empty()) replace_bias(n.v, bv);
  if (!bu.empty()) replace_bias(n.up, bu);

  // Clip search (skip q/k) on the scaled weights and inputs, then quantize.
  auto clip = [&](std::vector<float>& W, int64_t rows, int64_t in, const std::vector<float>& X) {
    const auto mv = quant::awq_search_clip(W.data(), rows, in, X.data(), ST, ao);
    quant::awq_apply_clip(W.data(), rows, in, ao.group_size, mv);
  };
  clip(Wv, KVD, H, H1);
  clip(Wo, H, QD, ATT);
  clip(Wg, I, H, H2);
  clip(Wu, I, H, H2);
  clip(Wd, H, I, G);
  emit_affine(n.q, quant::awq_quantize(Wq.data(), QD, H, ao));
  emit_affine(n.k, quant::awq_quantize(Wk.data(), KVD, H, ao));
  emit_affine(n.v, quant::awq_quantize(Wv.data(), KVD, H, ao));
  emit_affine(n.o, quant::awq_quantize(Wo.data(), H, QD, ao));
  emit_affine(n.gate, quant::awq_quantize(Wg.data(), I, H, ao));
  emit_affine(n.up, quant::awq_quantize(Wu.data(), I, H, ao));
  emit_affine(n.down, quant::awq_quantize(Wd.data(), H, I, ao));
  return info;
}

// ---- lm_head -------------------------------------------------------------------

void Quantizer::lm_head() {
  const int64_t V = c_.vocab_size, H = c_.hidden_size;
  const std::string name = src_.st.has("lm_head.weight") ? "lm_head" : "model.embed_tokens";
  std::vector<float> W = src_.weight(name, V, H);
  if (!method_needs_calibration(o_.method)) {
    emit_plain("lm_head", W, V, H);
    return;
  }
  // Calibrated methods: the lm_head input is the final norm of the last layer's output.
  std::vector<float> F(static_cast<size_t>(S_ * T_ * H));
  cpu::rmsnorm(X_.data(), m_.final_norm().data(), float(c_.rms_norm_eps), S_ * T_, H, F.data());
  if (is_gptq(o_.method)) {
    quant::Hessian h(H);
    h.add(F.data(), S_ * T_);
    emit_affine("lm_head", quant::gptq_quantize(W.data(), V, H, h.take_matrix(), gptq_opts()).w);
  } else {  // AWQ: no previous op to fold a scale into; clip search + asymmetric groups.
    const quant::AwqOptions ao = awq_opts();
    const auto mv = quant::awq_search_clip(W.data(), V, H, F.data(), S_ * T_, ao);
    quant::awq_apply_clip(W.data(), V, H, ao.group_size, mv);
    emit_affine("lm_head", quant::awq_quantize(W.data(), V, H, ao));
  }
}

QuantizeSummary Quantizer::run() {
  QuantizeSummary sum;
  sum.settings = quantize_settings(o_, calib_);
  const auto t0 = std::chrono::steady_clock::now();
  const bool calibrated = method_needs_calibration(o_.method);
  const int64_t H = c_.hidden_size;
  if (calibrated) {
    LQ_CHECK(calib_ && !calib_->seqs.empty(), "{} needs calibration data", quant_method_name(o_.method));
    sum.calibration = calib_->description;
    S_ = int64_t(calib_->seqs.size());
    T_ = int64_t(calib_->seqs[0].size());
    LQ_CHECK(T_ <= c_.max_position_embeddings, "calibration length {} exceeds the model's context {}", T_,
             c_.max_position_embeddings);
    for (const auto& s : calib_->seqs) LQ_CHECK(int64_t(s.size()) == T_, "calibration samples must have equal length");
    rope_ = make_rope(m_, T_);
    X_.resize(size_t(S_ * T_ * H));
    const uint16_t* E = m_.embed_bf16();
    for (int64_t s = 0; s < S_; ++s)
      for (int64_t t = 0; t < T_; ++t) {
        const int32_t id = calib_->seqs[size_t(s)][size_t(t)];
        LQ_CHECK(id >= 0 && id < c_.vocab_size, "calibration token id {} is outside the vocabulary [0, {})", id,
                 c_.vocab_size);
        cpu::bf16_to_f32_n(E + int64_t(id) * H, H, X_.data() + (s * T_ + t) * H);
      }
  }
  std::unique_ptr<Progress> prog;
  if (o_.show_progress)
    prog = std::make_unique<Progress>(std::string("quantize ") + std::string(quant_method_name(o_.method)),
                                      c_.num_layers, "layers", 0.0);
  for (int64_t l = 0; l < c_.num_layers; ++l) {
    const auto l0 = std::chrono::steady_clock::now();
    json info = is_gptq(o_.method) ? layer_gptq(l) : o_.method == QuantMethod::AwqInt4 ? layer_awq(l) : layer_plain(l);
    info["layer"] = l;
    info["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - l0).count();
    sum.layers.push_back(std::move(info));
    if (prog) prog->update(l + 1);
  }
  if (o_.quantize_lm_head) lm_head();
  if (prog) prog->finish();
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

// Rewrites `path` (a safetensors file) with some tensors' bytes replaced (same dtype/shape).
void patch_safetensors(const std::string& path, const std::map<std::string, std::vector<uint16_t>>& bf16) {
  if (bf16.empty()) return;
  SafeTensors st = SafeTensors::open(path);
  std::vector<TensorToWrite> out;
  for (const std::string& name : st.names()) {
    const TensorInfo& t = st.get(name);
    auto it = bf16.find(name);
    if (it != bf16.end()) {
      LQ_CHECK(t.dtype == DType::BF16 && t.numel() == int64_t(it->second.size()),
               "{}: tensor '{}' is {} {}, cannot replace it with {} bf16 values", path, name, dtype_name(t.dtype),
               t.shape_str(), it->second.size());
      out.push_back({name, t.dtype, t.shape, it->second.data()});
    } else {
      out.push_back({name, t.dtype, t.shape, t.data});
    }
  }
  write_safetensors(path, out, st.metadata());
}

}  // namespace

std::vector<float> calibration_forward(const Model& m, const std::vector<int32_t>& ids) {
  const ModelConfig& c = m.config();
  const int64_t T = int64_t(ids.size()), H = c.hidden_size;
  LQ_CHECK(T > 0 && T <= c.max_position_embeddings, "calibration_forward: {} tokens", T);
  const Rope rope = make_rope(m, T);
  std::vector<float> x(static_cast<size_t>(T * H)), h(static_cast<size_t>(T * H)), tmp(static_cast<size_t>(T * H));
  std::vector<float> att(static_cast<size_t>(T * c.q_dim())), g(static_cast<size_t>(T * c.intermediate_size));
  for (int64_t t = 0; t < T; ++t) {
    LQ_CHECK(ids[size_t(t)] >= 0 && ids[size_t(t)] < c.vocab_size, "token id {} outside the vocabulary", ids[size_t(t)]);
    cpu::bf16_to_f32_n(m.embed_bf16() + int64_t(ids[size_t(t)]) * H, H, x.data() + t * H);
  }
  const float eps = float(c.rms_norm_eps);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& L = m.layer(l);
    cpu::rmsnorm(x.data(), L.attn_norm.data(), eps, T, H, h.data());
    attention_block(c, rope, h.data(), T, model_lin(*L.q), model_lin(*L.k), model_lin(*L.v), att.data());
    L.o->forward(att.data(), T, tmp.data(), Precision::F32);
    cpu::add_inplace(x.data(), tmp.data(), T * H);
    cpu::rmsnorm(x.data(), L.mlp_norm.data(), eps, T, H, h.data());
    mlp_act(c, h.data(), T, model_lin(*L.gate), model_lin(*L.up), g.data());
    L.down->forward(g.data(), T, tmp.data(), Precision::F32);
    cpu::add_inplace(x.data(), tmp.data(), T * H);
  }
  return x;
}

QuantizeSummary quantize_layers(const Model& m, const QuantizeOptions& o, const quant::CalibData* calib,
                                const QuantizeSink& sink) {
  Quantizer q(m, o, calib, sink);
  return q.run();
}

QuantizeSummary quantize_model(const std::string& model_dir, const std::string& out_dir, const QuantizeOptions& o) {
  auto m = Model::load(model_dir);
  const ModelConfig& c = m->config();
  LQ_CHECK(c.quantization_method.empty(), "{}: the model is already quantized ({}); quantize needs a float checkpoint",
           model_dir, c.quantization_method);
  std::error_code ec;
  LQ_CHECK(std::filesystem::absolute(model_dir, ec) != std::filesystem::absolute(out_dir, ec),
           "--out must differ from --model ({})", out_dir);
  std::optional<quant::CalibData> calib;
  if (method_needs_calibration(o.method))
    calib = quant::make_calibration(model_dir, c.vocab_size, c.bos_token_id, o.calib);
  if (o.method == QuantMethod::AwqInt4) {
    LQ_CHECK(!o.act_order, "--act-order is a GPTQ option; AWQ has no column reordering");
    LQ_CHECK(o.group_size > 0, "awq-int4 needs a positive --group-size (got {})", o.group_size);
  }
  quant::CheckpointFormat f = quant::CheckpointFormat::Gptq;
  if (o.method == QuantMethod::AwqInt4) f = quant::CheckpointFormat::Awq;
  if (o.method == QuantMethod::Nf4) f = quant::CheckpointFormat::BnbNf4;
  if (o.method == QuantMethod::Fp8) f = quant::CheckpointFormat::CtFp8;
  const json settings = quantize_settings(o, calib ? &*calib : nullptr);
  quant::QuantizedCheckpointWriter w(model_dir, out_dir, {f, settings, true});
  std::map<std::string, std::vector<uint16_t>> replaced;
  QuantizeSink sink;
  sink.affine = [&](const std::string& p, const AffineGroups& a) { w.add(p, a); };
  sink.nf4 = [&](const std::string& p, const quant::Nf4Blocks& a) { w.add(p, a); };
  sink.fp8 = [&](const std::string& p, const quant::Fp8Weight& a) { w.add(p, a); };
  sink.replace_bf16 = [&](const std::string& name, const std::vector<uint16_t>& v) { replaced[name] = v; };
  QuantizeSummary sum = quantize_layers(*m, o, calib ? &*calib : nullptr, sink);
  w.finish();
  patch_safetensors(out_dir + "/model.safetensors", replaced);
  // Record the per-layer outcome (GPTQ losses and damping, AWQ ratios, timings).
  const std::string cfg_path = out_dir + "/config.json";
  json cfg = json::parse(read_file(cfg_path));
  cfg["quantization_config"]["longquant"]["layers"] = sum.layers;
  cfg["quantization_config"]["longquant"]["seconds"] = sum.seconds;
  if (!replaced.empty()) {
    json names = json::array();
    for (const auto& [k, v] : replaced) names.push_back(k);
    cfg["quantization_config"]["longquant"]["scaled_tensors"] = names;
  }
  {
    const std::string tmp = cfg_path + ".tmp";
    std::FILE* fp = std::fopen(tmp.c_str(), "wb");
    LQ_CHECK(fp, "{}: cannot open for writing", tmp);
    const std::string text = cfg.dump(2) + "\n";
    const bool ok = std::fwrite(text.data(), 1, text.size(), fp) == text.size();
    std::fclose(fp);
    LQ_CHECK(ok, "{}: write failed", tmp);
    std::filesystem::rename(tmp, cfg_path, ec);
    LQ_CHECK(!ec, "{}: cannot rename to {}: {}", tmp, cfg_path, ec.message());
  }
  sum.settings = settings;
  return sum;
}

}  // namespace lq
