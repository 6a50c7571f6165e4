// core/mapped_file.h: read-only memory map of a whole file (RAII).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lq {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws lq::Error naming the path if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the resident pages lying wholly inside [p, p + n) from this process
  // (madvise MADV_DONTNEED): for bytes already copied elsewhere (e.g. quantized
  // weights converted to a kernel layout), so they stop counting in RSS. The
  // mapping stays valid: a later read faults the page back in from the file.
  // Ranges outside the mapping are ignored.
  void release(const uint8_t* p, size_t n) const;
  // Copies the file bytes that [p, p + n) of the mapping shows into dst with
  // pread(2), without touching (faulting in) the mapping: ~3x faster than memcpy
  // from the map for gigabytes of weights (docs/kernels-matmul.md "Resident
  // weights"). Throws lq::Error naming the path if the range is outside the
  // mapping or the read fails or comes up short (file truncated since mapped).
  void read(const uint8_t* p, size_t n, void* dst) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Whole file into a string; throws lq::Error naming the path.
std::string read_file(const std::string& path);
bool file_exists(const std::string& path);

}  // namespace lq
