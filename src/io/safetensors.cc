// io/safetensors.cc: validating memory-mapped safetensors reader and atomic writer.
//
// What: SafeTensors::open maps one .safetensors file or every shard of a
// model.safetensors.index.json checkpoint, parses and validates each header, and
// exposes TensorInfo views (pointers into the mapping, no copies).
// write_safetensors writes the same format (header padded with spaces so that the
// data buffer starts at a multiple of 64 bytes of the file; the format only asks
// for 8).
//
// Why so much validation: checkpoints come from the internet and from partial
// downloads. Every inconsistency is rejected up front with an lq::Error naming
// the file and the tensor, so that later code may trust every TensorInfo:
// data..data+nbytes lies inside the mapped file, nbytes == numel * dtype_size,
// and no two tensors share bytes.
//
// Alignment: `data` is only as aligned as the writer made it (the format itself
// does not require alignment); consumers must not assume more than 1 byte.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <set>

#include "core/error.h"
#include "io/json_util.h"

namespace lq {

namespace {

using json = nlohmann::json;

// A header larger than this is certainly not a real safetensors header
// (a 1000-layer model with long names needs a few hundred kB).
constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// numel * elem_size without overflow; returns false on overflow.
bool checked_nbytes(const std::vector<int64_t>& shape, size_t elem_size, uint64_t* out) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (__builtin_mul_overflow(n, uint64_t(d), &n)) return false;
  }
  if (__builtin_mul_overflow(n, uint64_t(elem_size), &n)) return false;
  *out = n;
  return true;
}

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string parent_dir(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return "";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

struct ParsedFile {
  std::shared_ptr<MappedFile> file;
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

// Parses and validates one .safetensors file. Every message starts with `path`.
ParsedFile parse_file(const std::string& path) {
  ParsedFile out;
  out.file = std::make_shared<MappedFile>(path);
  const MappedFile& mf = *out.file;
  const size_t size = mf.size();
  if (size < 8)
    fail("{}: file is {} bytes, too short to hold the 8-byte header length (truncated file?)", path, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | mf.data()[i];  // little-endian u64
  if (n == 0) fail("{}: header length is 0 (not a safetensors file?)", path);
  if (n > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the {}-byte limit (not a safetensors file?)", path, n, kMaxHeaderBytes);
  if (n > size - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes; truncated file?)", path, n, size);

  const std::string_view header(reinterpret_cast<const char*>(mf.data()) + 8, size_t(n));
  std::string dup;
  json h = parse_json(header, path + " (header)", &dup);
  if (!h.is_object()) fail("{}: header is a JSON {}, expected an object", path, json_type_name(h));
  if (!dup.empty()) fail("{}: tensor '{}' appears twice in the header", path, dup);

  const uint8_t* data = mf.data() + 8 + n;
  const uint64_t data_len = size - 8 - n;

  struct Range { uint64_t begin, end; const std::string* name; };
  std::vector<Range> ranges;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("{}: __metadata__ is a JSON {}, expected an object", path, json_type_name(v));
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail("{}: __metadata__ entry '{}' is a JSON {}, expected a string", path, m.key(),
               json_type_name(m.value()));
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail("{}: tensor '{}': entry is a JSON {}, expected an object", path, name, json_type_name(v));
    TensorInfo t;
    t.name = name;
    t.file = path;

    auto dt = v.find("dtype");
    if (dt == v.end()) fail("{}: tensor '{}': missing 'dtype'", path, name);
    if (!dt->is_string()) fail("{}: tensor '{}': 'dtype' is a JSON {}, expected a string", path, name, json_type_name(*dt));
    const std::string& dts = dt->get_ref<const std::string&>();
    if (!parse_dtype(dts, &t.dtype)) fail("{}: tensor '{}': unknown dtype '{}'", path, name, dts);

    auto sh = v.find("shape");
    if (sh == v.end()) fail("{}: tensor '{}': missing 'shape'", path, name);
    if (!sh->is_array()) fail("{}: tensor '{}': 'shape' is a JSON {}, expected an array", path, name, json_type_name(*sh));
    for (const json& d : *sh) {
      // Only exact JSON integers (no 4.0); unsigned parse means non-negative.
      if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX))
        fail("{}: tensor '{}': shape {} has an entry that is not a non-negative integer", path, name, sh->dump());
      t.shape.push_back(int64_t(d.get<uint64_t>()));
    }

    auto off = v.find("data_offsets");
    if (off == v.end()) fail("{}: tensor '{}': missing 'data_offsets'", path, name);
    if (!off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
      fail("{}: tensor '{}': data_offsets {} is not a pair of non-negative integers [begin, end]", path, name,
           off->dump());
    const uint64_t b = (*off)[0].get<uint64_t>(), e = (*off)[1].get<uint64_t>();
    if (b > e) fail("{}: tensor '{}': data_offsets [{}, {}] has begin > end", path, name, b, e);
    if (e > data_len)
      fail("{}: tensor '{}': data_offsets [{}, {}] run past the end of the data buffer ({} bytes; truncated file?)",
           path, name, b, e, data_len);
    uint64_t need = 0;
    if (!checked_nbytes(t.shape, dtype_size(t.dtype), &need))
      fail("{}: tensor '{}': shape {} x {} overflows 64-bit byte count", path, name, shape_to_string(t.shape),
           dtype_name(t.dtype));
    if (need != e - b)
      fail("{}: tensor '{}': data_offsets [{}, {}] give {} bytes but shape {} x {} needs {}", path, name, b, e, e - b,
           shape_to_string(t.shape), dtype_name(t.dtype), need);
    t.data = data + b;
    t.nbytes = size_t(need);
    out.tensors.push_back(std::move(t));
  }

  // Overlap check: sort by begin; each non-empty range must start at or after
  // the previous non-empty range's end. Empty tensors occupy no bytes.
  for (const TensorInfo& t : out.tensors) {
    if (t.nbytes == 0) continue;
    const uint64_t b = uint64_t(t.data - data);
    ranges.push_back({b, b + t.nbytes, &t.name});
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : *a.name < *b.name;
  });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end)
      fail("{}: tensor '{}': data_offsets [{}, {}] overlap tensor '{}' at [{}, {}]", path, *ranges[i].name,
           ranges[i].begin, ranges[i].end, *ranges[i - 1].name, ranges[i - 1].begin, ranges[i - 1].end);
  }
  return out;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated not to overflow when read
  return n;
}

std::string TensorInfo::shape_str() const { return shape_to_string(shape); }

SafeTensors SafeTensors::open(const std::string& path) {
  SafeTensors st;
  st.source_ = path;

  std::string file = path;
  bool sharded = false;
  if (is_dir(path)) {
    const std::string single = join_path(path, "model.safetensors");
    const std::string index = join_path(path, "model.safetensors.index.json");
    if (file_exists(single)) {
      file = single;
    } else if (file_exists(index)) {
      file = index;
      sharded = true;
    } else {
      fail("{}: neither model.safetensors nor model.safetensors.index.json found in this directory", path);
    }
  } else if (ends_with(path, ".json")) {
    sharded = true;
  } else if (!file_exists(path)) {
    fail("{}: no such file or directory", path);
  }

  auto add = [&](ParsedFile&& pf) {
    for (TensorInfo& t : pf.tensors) {
      auto [it, inserted] = st.tensors_.try_emplace(t.name, t);
      if (!inserted)
        fail("{}: tensor '{}' occurs in both {} and {}", file, t.name, it->second.file, t.file);
    }
    for (auto& [k, v] : pf.metadata) st.metadata_.try_emplace(k, v);  // first shard wins
    st.files_.push_back(std::move(pf.file));
  };

  if (!sharded) {
    add(parse_file(file));
    return st;
  }

  // Sharded: {"metadata": {...}, "weight_map": {"tensor": "shard file", ...}}
  std::string dup;
  const json idx = parse_json(read_file(file), file, &dup);
  if (!idx.is_object()) fail("{}: index is a JSON {}, expected an object", file, json_type_name(idx));
  if (!dup.empty()) fail("{}: key '{}' appears twice", file, dup);
  auto wm = idx.find("weight_map");
  if (wm == idx.end()) fail("{}: missing 'weight_map'", file);
  if (!wm->is_object()) fail("{}: 'weight_map' is a JSON {}, expected an object", file, json_type_name(*wm));
  if (wm->empty()) fail("{}: 'weight_map' is empty", file);
  const std::string dir = parent_dir(file);
  std::map<std::string, std::vector<std::string>> by_shard;  // shard -> tensors mapped to it
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      fail("{}: weight_map entry for tensor '{}' is a JSON {}, expected a shard file name", file, it.key(),
           json_type_name(it.value()));
    const std::string& shard = it.value().get_ref<const std::string&>();
    if (shard.empty()) fail("{}: weight_map entry for tensor '{}' is an empty file name", file, it.key());
    by_shard[shard].push_back(it.key());
  }
  // Check every shard exists before mapping any, so the error names the first missing one.
  for (const auto& [shard, names] : by_shard) {
    const std::string sp = shard.front() == '/' ? shard : join_path(dir, shard);
    if (!file_exists(sp))
      fail("{}: shard '{}' (holding tensor '{}' and {} more) not found at {}", file, shard, names.front(),
           names.size() - 1, sp);
  }
  for (const auto& [shard, names] : by_shard) {
    const std::string sp = shard.front() == '/' ? shard : join_path(dir, shard);
    ParsedFile pf = parse_file(sp);
    std::set<std::string> present;
    for (const TensorInfo& t : pf.tensors) present.insert(t.name);
    for (const std::string& n : names) {
      if (!present.count(n))
        fail("{}: tensor '{}' is mapped to shard '{}' but {} does not contain it", file, n, shard, sp);
    }
    add(std::move(pf));
  }
  return st;
}

bool SafeTensors::has(const std::string& name) const { return tensors_.count(name) != 0; }

const TensorInfo& SafeTensors::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("{}: tensor '{}' not found", source_, name);
  return it->second;
}

const TensorInfo& SafeTensors::get(const std::string& name, DType dtype, const std::vector<int64_t>& shape) const {
  const TensorInfo& t = get(name);
  if (t.dtype != dtype)
    fail("tensor '{}' in {} has dtype {}, expected {}", name, t.file, dtype_name(t.dtype), dtype_name(dtype));
  if (t.shape != shape)
    fail("tensor '{}' in {} has shape {}, expected {}", name, t.file, t.shape_str(), shape_to_string(shape));
  return t;
}

std::vector<std::string> SafeTensors::names() const {
  std::vector<std::string> v;
  v.reserve(tensors_.size());
  for (const auto& kv : tensors_) v.push_back(kv.first);
  return v;  // std::map iterates in sorted order
}

void SafeTensors::release(const std::string& prefix) const {
  const std::string key = prefix + ".";
  for (auto it = tensors_.lower_bound(key); it != tensors_.end() && it->first.compare(0, key.size(), key) == 0; ++it)
    for (const auto& f : files_) f->release(it->second.data, it->second.nbytes);  // no-op outside each mapping
}

void SafeTensors::read(const std::string& name, void* dst) const {
  const TensorInfo& t = get(name);
  for (const auto& f : files_) {
    if (t.data < f->data() || t.data >= f->data() + f->size()) continue;
    try {
      f->read(t.data, t.nbytes, dst);
    } catch (const Error& e) {
      fail("tensor '{}': {}", name, e.what());
    }
    return;
  }
  LQ_CHECK(t.nbytes == 0, "{}: tensor '{}' is in no mapped file", t.file, name);
}

size_t SafeTensors::total_bytes() const {
  size_t s = 0;
  for (const auto& kv : tensors_) s += kv.second.nbytes;
  return s;
}

// ---------------------------------------------------------------------------
// Writer

namespace {

// Writes all of [p, p+n) to fd; returns false (errno set) on failure.
bool write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    c += w;
    n -= size_t(w);
  }
  return true;
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Validate and order the tensors.
  std::vector<const TensorToWrite*> order;
  order.reserve(tensors.size());
  for (const TensorToWrite& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->name < b->name; });
  std::vector<uint64_t> sizes;
  sizes.reserve(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const TensorToWrite& t = *order[i];
    if (t.name.empty()) fail("{}: cannot write a tensor with an empty name", path);
    if (t.name == "__metadata__") fail("{}: '__metadata__' is reserved and cannot be a tensor name", path);
    if (i > 0 && order[i - 1]->name == t.name) fail("{}: tensor '{}' given twice", path, t.name);
    uint64_t nb = 0;
    if (!checked_nbytes(t.shape, dtype_size(t.dtype), &nb))
      fail("{}: tensor '{}': shape {} has a negative dimension or overflows", path, t.name, shape_to_string(t.shape));
    if (nb > 0 && t.data == nullptr) fail("{}: tensor '{}': data is null but {} bytes are needed", path, t.name, nb);
    sizes.push_back(nb);
  }
  // Data order: widest element type first, then by name (as the reference
  // safetensors serializer does), so every tensor starts at a multiple of its
  // element size: the 8-byte-padded header keeps the buffer 8-aligned, and all
  // sizes of wider types are multiples of the narrower ones' alignment.
  {
    std::vector<size_t> idx(order.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    // Within one width, tensors whose size is a multiple of 64 bytes come first:
    // with the 64-byte aligned data buffer they all start on a cache line (the
    // AMX GEMM reads such bf16 weights in place, see kernels/cpu/amx_gemm.cc).
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
      const size_t wa = dtype_size(order[a]->dtype), wb = dtype_size(order[b]->dtype);
      if (wa != wb) return wa > wb;
      return (sizes[a] % 64 == 0) > (sizes[b] % 64 == 0);
    });
    std::vector<const TensorToWrite*> o2;
    std::vector<uint64_t> s2;
    for (size_t i : idx) { o2.push_back(order[i]); s2.push_back(sizes[i]); }
    order.swap(o2);
    sizes.swap(s2);
  }

  // Header: __metadata__ first (if any), then tensors in data order, offsets consecutive.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  uint64_t off = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const TensorToWrite& t = *order[i];
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = std::string(dtype_name(t.dtype));
    e["shape"] = t.shape;
    e["data_offsets"] = {off, off + sizes[i]};
    h[t.name] = std::move(e);
    off += sizes[i];
  }
  std::string header;
  try {
    header = h.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: cannot encode header (tensor names and metadata must be valid UTF-8): {}", path, e.what());
  }
  header.append(safetensors_header_padding(header.size()), ' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(header.size()) >> (8 * i));

  // Atomic write: temporary file in the same directory, fsync, rename.
  // pid + per-process counter: concurrent writers (threads or processes) never share a temporary.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create temporary file {}: {}", path, tmp, std::strerror(errno));
  auto bail = [&](const char* what) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    fail("{}: {} failed: {}", path, what, std::strerror(e));
  };
  if (!write_all(fd, len, 8) || !write_all(fd, header.data(), header.size())) bail("write");
  for (size_t i = 0; i < order.size(); ++i)
    if (sizes[i] > 0 && !write_all(fd, order[i]->data, size_t(sizes[i]))) bail("write");
  if (::fsync(fd) != 0) bail("fsync");
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: close failed: {}", path, std::strerror(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot rename {} into place: {}", path, tmp, std::strerror(e));
  }
}

}  // namespace lq
