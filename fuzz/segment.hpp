// Fuzz support: segment files written byte for byte into /dev/shm, as a
// hostile process would, and the clean-up that must leave nothing behind.
// Included before any import (docs/toolchain-notes.md, "Includes, imports and where spdlog may go", rule 1).
#pragma once

#include <fcntl.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace circbuf::fuzz {

[[noreturn]] inline void Fail(char const* what) {
  std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
  std::abort();
}

// "/cbfuzz-<tag>-<pid>": one per fuzzing process (libFuzzer -jobs runs several).
inline std::string NameFor(char const* tag) { return "/cbfuzz-" + std::string(tag) + "-" + std::to_string(::getpid()); }

inline bool PathExists(std::string const& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

// Removes the segment `name` and its lock, whatever state they are in.
inline void RemoveAll(std::string const& name) {
  ::shm_unlink(name.c_str());
  ::sem_unlink(name.c_str());
}

// Nothing of `name` is left in /dev/shm.
inline void ExpectNothingLeft(std::string const& name) {
  if (PathExists("/dev/shm/" + name.substr(1)) || PathExists("/dev/shm/sem." + name.substr(1))) {
    Fail("a segment or lock was left in /dev/shm");
  }
}

// Creates segment file `name` of `file_bytes` bytes (zeros) whose first bytes are `contents`.
inline bool WriteSegment(std::string const& name, std::size_t file_bytes, std::span<std::uint8_t const> contents) {
  RemoveAll(name);
  int const fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = ::ftruncate(fd, static_cast<off_t>(file_bytes)) == 0;
  std::size_t const n = contents.size() < file_bytes ? contents.size() : file_bytes;
  if (ok && n != 0) ok = ::pwrite(fd, contents.data(), n, 0) == static_cast<ssize_t>(n);
  ::close(fd);
  return ok;
}

// The whole file of segment `name` (for seeds).
inline std::vector<std::uint8_t> ReadSegment(std::string const& name) {
  std::vector<std::uint8_t> bytes;
  int const fd = ::shm_open(name.c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return bytes;
  struct stat st{};
  if (::fstat(fd, &st) == 0) {
    bytes.resize(static_cast<std::size_t>(st.st_size));
    if (::pread(fd, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size())) bytes.clear();
  }
  ::close(fd);
  return bytes;
}

// A read-write mapping of a whole segment file: the hostile writer's view.
class RawMapping {
 public:
  explicit RawMapping(std::string const& name) {
    int const fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) return;
    struct stat st{};
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      bytes_ = static_cast<std::size_t>(st.st_size);
      void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (p != MAP_FAILED) base_ = static_cast<std::uint8_t*>(p);
    }
    ::close(fd);
  }
  ~RawMapping() {
    if (base_ != nullptr) ::munmap(base_, bytes_);
  }
  RawMapping(RawMapping const&) = delete;
  RawMapping& operator=(RawMapping const&) = delete;
  [[nodiscard]] std::uint8_t* Base() const { return base_; }
  [[nodiscard]] std::size_t Bytes() const { return bytes_; }

 private:
  std::uint8_t* base_ = nullptr;
  std::size_t bytes_ = 0;
};

// Seed files: fuzz/corpus/<target>/<name>.
inline void WriteSeed(std::string const& dir, std::string const& file, std::vector<std::uint8_t> const& bytes) {
  std::string const path = dir + "/" + file;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) Fail("cannot write a seed");
  std::fclose(f);
  std::fprintf(stderr, "seed %s: %zu bytes\n", path.c_str(), bytes.size());
}

inline void PutU32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
inline void PutU64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
// `bytes` without its trailing zeros (the file is zero-filled beyond what an input gives).
inline std::vector<std::uint8_t> Trimmed(std::vector<std::uint8_t> bytes) {
  while (!bytes.empty() && bytes.back() == 0) bytes.pop_back();
  return bytes;
}

}  // namespace circbuf::fuzz
