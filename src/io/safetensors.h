// io/safetensors.h: memory-mapped reader (single file or sharded) and writer.
//
// Format: 8-byte little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}, ...,
//  "__metadata__": {"k": "v"}}, then the data buffer; offsets are relative to it.
// The reader validates everything and throws lq::Error naming file and tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace lq {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapped file; only byte-aligned in general
                                  // (our writer 8-aligns the data buffer, other writers may not)
  size_t nbytes = 0;
  std::string file;               // path of the file holding it

  int64_t numel() const;
  std::string shape_str() const;  // "[4096, 4096]"
};

class SafeTensors {
 public:
  // `path` is a .safetensors file, a model.safetensors.index.json, or a directory
  // holding model.safetensors or model.safetensors.index.json.
  static SafeTensors open(const std::string& path);

  bool has(const std::string& name) const;
  // Throws lq::Error "<dir>: tensor 'name' not found" if missing.
  const TensorInfo& get(const std::string& name) const;
  // get() plus a check of dtype and shape, with a clear message on mismatch.
  const TensorInfo& get(const std::string& name, DType dtype, const std::vector<int64_t>& shape) const;
  std::vector<std::string> names() const;  // sorted
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& source() const { return source_; }
  size_t total_bytes() const;  // sum of all tensors' byte sizes
  // Drops the resident mapped pages of every tensor named `prefix` + "." + anything
  // (MappedFile::release): for tensors the caller has copied into its own layout.
  // Their data stays readable (re-read from the file on access).
  void release(const std::string& prefix) const;
  // Copies the tensor's bytes (nbytes) into dst from its file (MappedFile::read:
  // pread, the mapping is not touched). Throws naming file and tensor on failure.
  void read(const std::string& name, void* dst) const;

 private:
  std::string source_;
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write. `data` must hold numel * dtype_size bytes.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
};

// Writes tensors (sorted by width, then name; header padded to a 64-byte aligned data buffer) to `path` atomically
// (temporary file + rename). Throws lq::Error naming the path.
// Spaces to append to a JSON header of `header_len` bytes so that the data buffer
// (8-byte length + header) starts at a multiple of 64 bytes of the file: every
// tensor of a 64-byte-multiple size placed first is then cache-line aligned in the
// page-aligned mapping (the AMX GEMM reads such bf16 weights in place). Readers
// (ours, transformers') skip trailing spaces. Used by every writer of ours.
inline size_t safetensors_header_padding(size_t header_len) { return (64 - (8 + header_len) % 64) % 64; }

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace lq
