// io/safetensors_test.cc: reader/writer round trips, a byte-exact writer check,
// sharded checkpoints, and one test per class of corrupt input (each asserting
// that the lq::Error names the file and, where relevant, the tensor).
// Files are written to a fresh directory under ::testing::TempDir().
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>

#include "core/error.h"
#include "core/testing.h"

namespace lq {
namespace {

// A fresh temporary directory, removed (recursively) at the end of the test.
class TmpDir {
 public:
  TmpDir() {
    std::string tmpl = ::testing::TempDir() + "lq_st_XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    if (!p) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TmpDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char(uint8_t(n >> (8 * i)));
  return s;
}

// A raw safetensors file: length prefix + header text (unpadded) + data bytes.
std::string raw_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

// Runs f, expects lq::Error whose message contains every string in `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected lq::Error, nothing was thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

std::string bytes_of(const TensorInfo& t) { return std::string(reinterpret_cast<const char*>(t.data), t.nbytes); }

TEST(SafeTensors, RoundTripAllDtypes) {
  TmpDir dir;
  const std::string path = dir / "all.safetensors";
  const DType all[] = {DType::BF16, DType::F16, DType::F32, DType::F8_E4M3, DType::I8, DType::U8,
                       DType::I32,  DType::I64, DType::BOOL, DType::F64,     DType::I16};
  // One [2, 3] tensor per dtype filled with a dtype-specific byte pattern, plus
  // a scalar (shape []) and an empty tensor (shape [0, 5]).
  std::vector<std::string> buffers;
  std::vector<TensorToWrite> ts;
  for (DType t : all) {
    std::string b(6 * dtype_size(t), '\0');
    for (size_t i = 0; i < b.size(); ++i) b[i] = char(uint8_t(i * 7 + uint8_t(t) * 31 + 1));
    if (t == DType::BOOL) for (auto& c : b) c = char(c & 1);
    buffers.push_back(std::move(b));
  }
  for (size_t k = 0; k < std::size(all); ++k)
    ts.push_back({"t_" + std::string(dtype_name(all[k])), all[k], {2, 3}, buffers[k].data()});
  const float scalar = 3.25f;
  ts.push_back({"scalar", DType::F32, {}, &scalar});
  ts.push_back({"empty", DType::BF16, {0, 5}, nullptr});
  write_safetensors(path, ts, {{"format", "pt"}, {"note", "round trip"}});

  SafeTensors st = SafeTensors::open(path);
  EXPECT_EQ(st.source(), path);
  const std::vector<std::string> names = st.names();
  EXPECT_EQ(names.size(), std::size(all) + 2);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  size_t total = sizeof(float);
  for (size_t k = 0; k < std::size(all); ++k) {
    const std::string name = "t_" + std::string(dtype_name(all[k]));
    const TensorInfo& t = st.get(name, all[k], {2, 3});
    EXPECT_EQ(t.name, name);
    EXPECT_EQ(t.file, path);
    EXPECT_EQ(t.numel(), 6);
    EXPECT_EQ(t.shape_str(), "[2, 3]");
    EXPECT_EQ(bytes_of(t), buffers[k]) << name;
    total += buffers[k].size();
  }
  const TensorInfo& s = st.get("scalar", DType::F32, {});
  EXPECT_EQ(s.numel(), 1);
  float sv;
  std::memcpy(&sv, s.data, 4);
  EXPECT_EQ(sv, 3.25f);
  const TensorInfo& e = st.get("empty", DType::BF16, {0, 5});
  EXPECT_EQ(e.nbytes, 0u);
  EXPECT_EQ(e.numel(), 0);
  EXPECT_EQ(st.total_bytes(), total);
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_EQ(st.metadata().at("note"), "round trip");
  EXPECT_FALSE(st.has("absent"));

  // Header padded so that the data buffer starts at a multiple of 64 of the file.
  std::ifstream f(path, std::ios::binary);
  unsigned char len[8];
  f.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  EXPECT_EQ((8 + n) % 64, 0u);
  // Overwriting an existing file works (rename over it) and leaves no temporary behind.
  write_safetensors(path, {ts[0]});
  EXPECT_EQ(SafeTensors::open(path).names().size(), 1u);
  size_t entries = 0;
  for ([[maybe_unused]] auto& de : std::filesystem::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1u);
}

// The writer's exact bytes for a small case, worked out by hand from the format:
// tensors sorted by name in the header and the data, offsets consecutive,
// header padded with spaces so that 8 + its length is a multiple of 64.
TEST(SafeTensors, WriterBytesExact) {
  TmpDir dir;
  const std::string path = dir / "x.safetensors";
  const uint16_t b[2] = {0x3f80, 0xc000};  // bf16 1.0, -2.0
  const uint8_t a[3] = {1, 2, 3};
  write_safetensors(path, {{"b", DType::BF16, {2}, b}, {"a", DType::U8, {3}, a}}, {{"k", "v"}});
  // Data order: widest dtype first (then name), so the BF16 tensor stays 2-byte
  // aligned even though the U8 one has an odd size.
  const std::string header =
      R"({"__metadata__":{"k":"v"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},)"
      R"("a":{"dtype":"U8","shape":[3],"data_offsets":[4,7]}})";
  std::string padded = header + std::string((64 - (8 + header.size()) % 64) % 64, ' ');
  const std::string expected = le64(padded.size()) + padded + std::string("\x80\x3f\x00\xc0\x01\x02\x03", 7);
  std::ifstream f(path, std::ios::binary);
  std::string got((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(got, expected);
}

// A file written by hand (as another writer might: unpadded, keys in any order,
// 4-byte data not aligned) reads correctly.
TEST(SafeTensors, ReadsHandWrittenFile) {
  TmpDir dir;
  const std::string path = dir / "h.safetensors";
  const std::string header =
      R"({"w":{"data_offsets":[2,10],"shape":[2],"dtype":"F32"},"i":{"shape":[1],"dtype":"I16","data_offsets":[0,2]},)"
      R"("__metadata__":{"format":"pt"}})";
  float w[2] = {1.5f, -0.25f};
  std::string data("\x34\x12", 2);
  data.append(reinterpret_cast<const char*>(w), 8);
  write_bytes(path, raw_file(header, data));
  SafeTensors st = SafeTensors::open(path);
  EXPECT_EQ(st.names(), (std::vector<std::string>{"i", "w"}));
  const TensorInfo& t = st.get("w", DType::F32, {2});
  float r[2];
  std::memcpy(r, t.data, 8);
  EXPECT_EQ(r[0], 1.5f);
  EXPECT_EQ(r[1], -0.25f);
  int16_t iv;
  std::memcpy(&iv, st.get("i", DType::I16, {1}).data, 2);
  EXPECT_EQ(iv, 0x1234);
}

TEST(SafeTensors, GetChecksDtypeAndShape) {
  TmpDir dir;
  const std::string path = dir / "g.safetensors";
  const float v[8] = {};
  write_safetensors(path, {{"x", DType::F32, {2, 4}, v}});
  SafeTensors st = SafeTensors::open(path);
  EXPECT_NO_THROW(st.get("x", DType::F32, {2, 4}));
  expect_error([&] { st.get("x", DType::F32, {4, 2}); }, {"tensor 'x'", path, "shape [2, 4]", "expected [4, 2]"});
  expect_error([&] { st.get("x", DType::BF16, {2, 4}); }, {"tensor 'x'", path, "dtype F32", "expected BF16"});
  expect_error([&] { st.get("y"); }, {path, "tensor 'y' not found"});
}

// Sharded checkpoint written by our writer plus a hand-written index.
TEST(SafeTensors, ShardedIndex) {
  TmpDir dir;
  const float a[2] = {1, 2}, b[3] = {3, 4, 5}, c[1] = {6};
  write_safetensors(dir / "model-00001-of-00002.safetensors", {{"a", DType::F32, {2}, a}}, {{"format", "pt"}});
  // Shard 2 also holds "extra", which the map does not list: still readable.
  write_safetensors(dir / "model-00002-of-00002.safetensors",
                    {{"b", DType::F32, {3}, b}, {"extra", DType::F32, {1}, c}});
  write_bytes(dir / "model.safetensors.index.json",
              R"({"metadata": {"total_size": 20}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                 "b": "model-00002-of-00002.safetensors"}})");
  for (const std::string& p : {dir.path(), dir / "model.safetensors.index.json"}) {
    SafeTensors st = SafeTensors::open(p);
    EXPECT_EQ(st.names(), (std::vector<std::string>{"a", "b", "extra"}));
    EXPECT_EQ(st.get("a").file, dir / "model-00001-of-00002.safetensors");
    EXPECT_EQ(st.get("b").file, dir / "model-00002-of-00002.safetensors");
    float r[3];
    std::memcpy(r, st.get("b", DType::F32, {3}).data, 12);
    EXPECT_EQ(r[2], 5.0f);
    std::memcpy(r, st.get("extra", DType::F32, {1}).data, 4);
    EXPECT_EQ(r[0], 6.0f);
    EXPECT_EQ(st.total_bytes(), 24u);
    EXPECT_EQ(st.metadata().at("format"), "pt");
  }
  // A copy keeps the mappings alive after the original is gone.
  std::optional<SafeTensors> copy;
  {
    SafeTensors st = SafeTensors::open(dir.path());
    copy = st;
  }
  float r0;
  std::memcpy(&r0, copy->get("a").data, 4);
  EXPECT_EQ(r0, 1.0f);
}

TEST(SafeTensors, DirectoryInput) {
  TmpDir dir;
  expect_error([&] { SafeTensors::open(dir.path()); },
               {dir.path(), "neither model.safetensors nor model.safetensors.index.json"});
  const float a[1] = {1};
  write_safetensors(dir / "model.safetensors", {{"single", DType::F32, {1}, a}});
  write_bytes(dir / "model.safetensors.index.json", R"({"weight_map": {"sharded": "nope.safetensors"}})");
  // model.safetensors is preferred over the index.
  EXPECT_TRUE(SafeTensors::open(dir.path()).has("single"));
  expect_error([&] { SafeTensors::open(dir / "missing.safetensors"); }, {dir / "missing.safetensors"});
}

// ---- corrupt inputs ---------------------------------------------------------

TEST(SafeTensorsCorrupt, TruncatedFile) {
  TmpDir dir;
  const std::string p = dir / "t.safetensors";
  write_bytes(p, std::string("\x10\x00\x00", 3));
  expect_error([&] { SafeTensors::open(p); }, {p, "3 bytes", "too short"});
  write_bytes(p, "");
  expect_error([&] { SafeTensors::open(p); }, {p, "0 bytes"});
  // Header intact but the data buffer cut short: the tensor's end is past it.
  write_bytes(p, raw_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(10, '\0')));
  expect_error([&] { SafeTensors::open(p); }, {p, "tensor 'w'", "[0, 16]", "past the end of the data buffer (10 bytes"});
}

TEST(SafeTensorsCorrupt, HeaderLength) {
  TmpDir dir;
  const std::string p = dir / "h.safetensors";
  write_bytes(p, le64(1000) + "{}");
  expect_error([&] { SafeTensors::open(p); }, {p, "header length 1000", "past the end of the file (10 bytes"});
  write_bytes(p, le64(0) + "{}");
  expect_error([&] { SafeTensors::open(p); }, {p, "header length is 0"});
  write_bytes(p, le64(uint64_t(1) << 40) + "{}");
  expect_error([&] { SafeTensors::open(p); }, {p, "header length 1099511627776 exceeds"});
  write_bytes(p, le64(~uint64_t(0)) + "{}");  // must not overflow size arithmetic
  expect_error([&] { SafeTensors::open(p); }, {p, "exceeds"});
}

TEST(SafeTensorsCorrupt, MalformedJson) {
  TmpDir dir;
  const std::string p = dir / "j.safetensors";
  write_bytes(p, raw_file(R"({"w":{"dtype":"F32",,}})", ""));
  expect_error([&] { SafeTensors::open(p); }, {p, "(header): invalid JSON at byte offset 20"});
  write_bytes(p, raw_file("[1, 2]", ""));
  expect_error([&] { SafeTensors::open(p); }, {p, "header is a JSON array, expected an object"});
  write_bytes(p, raw_file(R"({"w": 5})", ""));
  expect_error([&] { SafeTensors::open(p); }, {p, "tensor 'w'", "expected an object"});
}

TEST(SafeTensorsCorrupt, OverlappingOffsets) {
  TmpDir dir;
  const std::string p = dir / "o.safetensors";
  write_bytes(p, raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                          std::string(12, '\0')));
  expect_error([&] { SafeTensors::open(p); }, {p, "tensor 'b'", "[4, 12] overlap tensor 'a' at [0, 8]"});
  // Adjacent (touching) ranges and an empty tensor inside another's range are fine.
  write_bytes(p, raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                          std::string(12, '\0')));
  EXPECT_NO_THROW(SafeTensors::open(p));
}

TEST(SafeTensorsCorrupt, ByteSizeMismatch) {
  TmpDir dir;
  const std::string p = dir / "model.safetensors";
  // shape [4, 8] in BF16 needs 64 bytes, but the offsets give 100 (as if the dtype were wrong).
  write_bytes(p, raw_file(R"({"model.layers.0.mlp.up_proj.weight":{"dtype":"BF16","shape":[4,8],"data_offsets":[0,100]}})",
                          std::string(100, '\0')));
  expect_error([&] { SafeTensors::open(p); },
               {p + ": tensor 'model.layers.0.mlp.up_proj.weight': data_offsets [0, 100] give 100 bytes but shape "
                    "[4, 8] x BF16 needs 64"});
  // numel * size overflowing 64 bits is reported, not wrapped around.
  write_bytes(p, raw_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""));
  expect_error([&] { SafeTensors::open(p); }, {p, "tensor 'w'", "overflows"});
}

TEST(SafeTensorsCorrupt, UnknownDtypeAndBadFields) {
  TmpDir dir;
  const std::string p = dir / "d.safetensors";
  auto check = [&](const std::string& entry, std::initializer_list<std::string> parts) {
    write_bytes(p, raw_file(R"({"w":)" + entry + "}", std::string(16, '\0')));
    expect_error([&] { SafeTensors::open(p); }, parts);
  };
  check(R"({"dtype":"F4","shape":[1],"data_offsets":[0,1]})", {p, "tensor 'w'", "unknown dtype 'F4'"});
  check(R"({"dtype":5,"shape":[1],"data_offsets":[0,1]})", {p, "tensor 'w'", "'dtype' is a JSON number"});
  check(R"({"shape":[1],"data_offsets":[0,1]})", {p, "tensor 'w'", "missing 'dtype'"});
  check(R"({"dtype":"U8","data_offsets":[0,1]})", {p, "tensor 'w'", "missing 'shape'"});
  check(R"({"dtype":"U8","shape":[-1],"data_offsets":[0,1]})", {p, "tensor 'w'", "not a non-negative integer"});
  check(R"({"dtype":"U8","shape":[1.0],"data_offsets":[0,1]})", {p, "tensor 'w'", "not a non-negative integer"});
  check(R"({"dtype":"U8","shape":[1]})", {p, "tensor 'w'", "missing 'data_offsets'"});
  check(R"({"dtype":"U8","shape":[1],"data_offsets":[0]})", {p, "tensor 'w'", "not a pair"});
  check(R"({"dtype":"U8","shape":[1],"data_offsets":[1,0]})", {p, "tensor 'w'", "begin > end"});
}

TEST(SafeTensorsCorrupt, DuplicateNameAndMetadata) {
  TmpDir dir;
  const std::string p = dir / "m.safetensors";
  write_bytes(p, raw_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                          R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                          std::string(2, '\0')));
  expect_error([&] { SafeTensors::open(p); }, {p, "tensor 'w' appears twice"});
  write_bytes(p, raw_file(R"({"__metadata__":{"n":1}})", ""));
  expect_error([&] { SafeTensors::open(p); }, {p, "__metadata__ entry 'n'", "expected a string"});
  write_bytes(p, raw_file(R"({"__metadata__":[1]})", ""));
  expect_error([&] { SafeTensors::open(p); }, {p, "__metadata__ is a JSON array"});
}

TEST(SafeTensorsCorrupt, IndexProblems) {
  TmpDir dir;
  const float a[1] = {1};
  write_safetensors(dir / "s1.safetensors", {{"a", DType::F32, {1}, a}});
  write_safetensors(dir / "s2.safetensors", {{"a", DType::F32, {1}, a}, {"x", DType::F32, {1}, a}});
  const std::string idx = dir / "model.safetensors.index.json";
  // Shard missing.
  write_bytes(idx, R"({"weight_map": {"a": "s1.safetensors", "b": "missing.safetensors"}})");
  expect_error([&] { SafeTensors::open(dir.path()); }, {idx, "shard 'missing.safetensors'", "tensor 'b'", "not found"});
  // Tensor listed but absent from its shard.
  write_bytes(idx, R"({"weight_map": {"a": "s1.safetensors", "c": "s1.safetensors"}})");
  expect_error([&] { SafeTensors::open(idx); }, {idx, "tensor 'c'", "shard 's1.safetensors'", "does not contain it"});
  // Same tensor in two shards.
  write_bytes(idx, R"({"weight_map": {"a": "s1.safetensors", "x": "s2.safetensors"}})");
  expect_error([&] { SafeTensors::open(idx); }, {idx, "tensor 'a' occurs in both", "s1.safetensors", "s2.safetensors"});
  // Malformed index / wrong shapes of fields.
  write_bytes(idx, R"({"weight_map": {"a": "s1.safetensors",}})");
  expect_error([&] { SafeTensors::open(idx); }, {idx, "invalid JSON at byte offset"});
  write_bytes(idx, R"({"metadata": {}})");
  expect_error([&] { SafeTensors::open(idx); }, {idx, "missing 'weight_map'"});
  write_bytes(idx, R"({"weight_map": {"a": 3}})");
  expect_error([&] { SafeTensors::open(idx); }, {idx, "tensor 'a'", "expected a shard file name"});
  // A corrupt shard is reported with the shard's own path.
  write_bytes(dir / "s3.safetensors", "abc");
  write_bytes(idx, R"({"weight_map": {"a": "s3.safetensors"}})");
  expect_error([&] { SafeTensors::open(idx); }, {dir / "s3.safetensors", "too short"});
}

TEST(SafeTensorsWrite, Errors) {
  TmpDir dir;
  const float a[1] = {1};
  expect_error([&] { write_safetensors(dir / "no_such_dir/x.safetensors", {{"a", DType::F32, {1}, a}}); },
               {dir / "no_such_dir/x.safetensors", "cannot create"});
  expect_error([&] { write_safetensors(dir / "x.safetensors", {{"a", DType::F32, {1}, a}, {"a", DType::F32, {1}, a}}); },
               {"tensor 'a' given twice"});
  expect_error([&] { write_safetensors(dir / "x.safetensors", {{"a", DType::F32, {-1}, a}}); },
               {"tensor 'a'", "negative"});
  expect_error([&] { write_safetensors(dir / "x.safetensors", {{"a", DType::F32, {2}, nullptr}}); },
               {"tensor 'a'", "data is null"});
  expect_error([&] { write_safetensors(dir / "x.safetensors", {{"__metadata__", DType::F32, {1}, a}}); },
               {"reserved"});
  expect_error([&] { write_safetensors(dir / "x.safetensors", {{"a", DType::F32, {1}, a}}, {{"k", "\xff"}}); },
               {"UTF-8"});
  EXPECT_FALSE(file_exists(dir / "x.safetensors"));
}

// The fixtures (../shared/fixtures, or the identical copy under tests/data/fixtures)
// were written by the reference Python tooling: reading them checks
// compatibility with an independent writer.
TEST(SafeTensorsShared, TinyFixtures) {
  const std::string llama = ::lq::testing::fixture_dir("tiny-llama31");
  const std::string qwen = ::lq::testing::fixture_dir("tiny-qwen25");
  if (!file_exists(llama + "/model.safetensors") || !file_exists(qwen + "/model.safetensors"))
    GTEST_SKIP() << "fixtures absent (neither ../shared/fixtures nor tests/data/fixtures)";
  SafeTensors m = SafeTensors::open(llama + "/model.safetensors");
  EXPECT_EQ(m.names().size(), 21u);
  EXPECT_EQ(m.metadata().at("format"), "pt");
  EXPECT_NO_THROW(m.get("model.embed_tokens.weight", DType::BF16, {512, 64}));
  EXPECT_NO_THROW(m.get("lm_head.weight", DType::BF16, {512, 64}));
  EXPECT_NO_THROW(m.get("model.layers.1.mlp.down_proj.weight", DType::BF16, {64, 192}));
  EXPECT_NO_THROW(m.get("model.layers.0.self_attn.k_proj.weight", DType::BF16, {32, 64}));
  EXPECT_NO_THROW(m.get("model.norm.weight", DType::BF16, {64}));
  // Directory input finds model.safetensors.
  EXPECT_EQ(SafeTensors::open(llama).names(), m.names());

  SafeTensors g = SafeTensors::open(llama + "/golden.safetensors");
  EXPECT_NO_THROW(g.get("ids_7", DType::I32, {7}));
  EXPECT_NO_THROW(g.get("logits_7", DType::F32, {7, 512}));
  EXPECT_NO_THROW(g.get("greedy_300_logits", DType::F32, {16, 512}));
  EXPECT_NO_THROW(g.get("rope_inv_freq", DType::F32, {8}));
  EXPECT_EQ(g.metadata().at("rope_attention_factor"), "1.0");
  // greedy_7 as listed in the fixture README.
  const int32_t want[16] = {304, 437, 333, 438, 482, 424, 368, 111, 24, 360, 405, 39, 11, 499, 142, 94};
  EXPECT_EQ(std::memcmp(g.get("greedy_7").data, want, sizeof(want)), 0);

  SafeTensors q = SafeTensors::open(qwen + "/model.safetensors");
  EXPECT_EQ(q.names().size(), 26u);
  EXPECT_FALSE(q.has("lm_head.weight"));  // tied embeddings
  EXPECT_NO_THROW(q.get("model.layers.0.self_attn.q_proj.bias", DType::BF16, {64}));
  EXPECT_NO_THROW(q.get("model.layers.0.self_attn.v_proj.bias", DType::BF16, {32}));
  EXPECT_NO_THROW(q.get("model.layers.1.mlp.gate_proj.weight", DType::BF16, {160, 64}));
  EXPECT_FALSE(q.has("model.layers.0.self_attn.o_proj.bias"));
}

}  // namespace
}  // namespace lq

namespace lq {
namespace {
// Every tensor we write starts at a multiple of its element size, whatever the
// mix of odd-sized byte tensors (the mapping itself is page-aligned).
TEST(SafeTensors, WriterKeepsElementAlignment) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/align.safetensors";
  const uint8_t u[5] = {1, 2, 3, 4, 5};
  const uint16_t b[3] = {1, 2, 3};
  const float f[3] = {1, 2, 3};
  const int64_t l[1] = {7};
  write_safetensors(path, {{"a.u8", DType::U8, {5}, u}, {"b.bf16", DType::BF16, {3}, b},
                           {"c.f32", DType::F32, {3}, f}, {"d.i64", DType::I64, {1}, l},
                           {"e.u8", DType::U8, {1}, u}});
  SafeTensors st = SafeTensors::open(path);
  for (const auto& n : st.names()) {
    const TensorInfo& t = st.get(n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype), 0u) << n;
  }
  // Tensors whose size is a multiple of 64 bytes start on a cache line, whatever
  // odd-sized tensors of the same width sit beside them (names sort them after).
  std::vector<uint16_t> big(64, 1), odd(5, 2);
  write_safetensors(path, {{"a.odd", DType::BF16, {5}, odd.data()}, {"b.big", DType::BF16, {2, 32}, big.data()},
                           {"c.big", DType::BF16, {64}, big.data()}, {"d.u8", DType::U8, {5}, u}});
  SafeTensors st2 = SafeTensors::open(path);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(st2.get("b.big").data) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(st2.get("c.big").data) % 64, 0u);
}
}  // namespace
}  // namespace lq

namespace lq {
namespace {
// release(prefix) drops the resident pages of the named tensors only; the mapping
// stays valid, so their bytes read back unchanged (faulted in again from the file),
// and tensors outside the prefix are untouched. Tensors span several pages so that
// whole pages are actually released.
TEST(SafeTensors, ReleaseKeepsDataReadable) {
  const std::string path = ::testing::TempDir() + "/release.safetensors";
  std::vector<float> a(5000), b(7000), c(100);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -float(i);
  for (size_t i = 0; i < c.size(); ++i) c[i] = float(i) + 0.25f;
  write_safetensors(path, {{"layer.q.weight", DType::F32, {5000}, a.data()},
                           {"layer.q.scales", DType::F32, {7000}, b.data()},
                           {"layer.qk.weight", DType::F32, {100}, c.data()}});
  SafeTensors st = SafeTensors::open(path);
  st.release("layer.q");
  st.release("no.such.prefix");  // nothing matches: no effect
  EXPECT_EQ(std::memcmp(st.get("layer.q.weight").data, a.data(), a.size() * 4), 0);
  EXPECT_EQ(std::memcmp(st.get("layer.q.scales").data, b.data(), b.size() * 4), 0);
  EXPECT_EQ(std::memcmp(st.get("layer.qk.weight").data, c.data(), c.size() * 4), 0);
}
}  // namespace
}  // namespace lq

namespace lq {
namespace {
// read(name, dst) copies a tensor's bytes with pread, from the right file of a
// sharded checkpoint; a name that does not exist, or a file truncated after it
// was opened (the read comes up short), is an error naming file and tensor.
TEST(SafeTensors, ReadCopiesTensorBytes) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "read_shards";
  std::filesystem::create_directories(dir);
  std::vector<float> a(3000), b(50);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.25f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -float(i) - 1.0f;
  write_safetensors(dir / "model-00001-of-00002.safetensors", {{"a", DType::F32, {3000}, a.data()}});
  write_safetensors(dir / "model-00002-of-00002.safetensors", {{"b", DType::F32, {50}, b.data()}});
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})";
  SafeTensors st = SafeTensors::open(dir.string());
  std::vector<float> ga(a.size(), 7.0f), gb(b.size(), 7.0f);
  st.read("a", ga.data());
  st.read("b", gb.data());
  EXPECT_EQ(ga, a);
  EXPECT_EQ(gb, b);
  EXPECT_THROW(st.read("c", ga.data()), Error);
  // Truncate shard 1 under the open reader: the pread comes up short.
  ASSERT_EQ(::truncate((dir / "model-00001-of-00002.safetensors").c_str(), 200), 0);
  try {
    st.read("a", ga.data());
    FAIL() << "short read not reported";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("tensor 'a'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model-00001-of-00002.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  }
}
}  // namespace
}  // namespace lq
