// circbuf.record: the implementation. The format: docs/recording.md.
module;

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

module circbuf.record;

namespace circbuf::Recording {

static_assert(std::endian::native == std::endian::little, "the format is little-endian; so is every supported host");

// Not an anonymous namespace: g++-14 ICEs on internal-linkage helpers in module
// units at -O1 and up (docs/toolchain-notes.md, "ICE in ipa_comdats").
namespace record_impl {

// ---- CRC32C ------------------------------------------------------------------------------
constexpr std::uint32_t kPoly = 0x82F63B78;  // Castagnoli, reflected

constexpr std::array<std::uint32_t, 256> MakeTable() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? (c >> 1) ^ kPoly : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<std::uint32_t, 256> kTable = MakeTable();

// Appending n zero bytes to a raw (not inverted) CRC32C register is linear
// over GF(2): a 32x32 bit matrix, built by squaring the one for a single zero
// bit, and applied a byte of the register at a time through 4 tables. This
// joins CRCs computed in parallel: crc(A || B) = Shift_|B|(crc(A)) ^ crc_0(B),
// where crc_0 starts from register 0 (as in zlib's crc32_combine).
using Gf2Matrix = std::array<std::uint32_t, 32>;
constexpr std::uint32_t Gf2Times(Gf2Matrix const& m, std::uint32_t v) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; v != 0; ++i, v >>= 1) {
    if ((v & 1) != 0) sum ^= m[i];
  }
  return sum;
}
constexpr Gf2Matrix ZerosOperator(std::size_t bytes) {  // bytes: a power of two
  Gf2Matrix m{};
  m[0] = kPoly;  // one zero bit: shift right, the polynomial if bit 0 was set
  for (std::size_t i = 1; i < 32; ++i) m[i] = std::uint32_t{1} << (i - 1);
  for (std::size_t bits = 1; bits < 8 * bytes; bits *= 2) {
    Gf2Matrix square{};
    for (std::size_t i = 0; i < 32; ++i) square[i] = Gf2Times(m, m[i]);
    m = square;
  }
  return m;
}
using ShiftTable = std::array<std::array<std::uint32_t, 256>, 4>;
constexpr ShiftTable MakeShift(std::size_t bytes) {
  Gf2Matrix const m = ZerosOperator(bytes);
  ShiftTable t{};
  for (std::size_t k = 0; k < 4; ++k) {
    for (std::uint32_t b = 0; b < 256; ++b) t[k][b] = Gf2Times(m, b << (8 * k));
  }
  return t;
}
inline std::uint32_t Shift(ShiftTable const& t, std::uint64_t r) {
  return t[0][r & 0xff] ^ t[1][(r >> 8) & 0xff] ^ t[2][(r >> 16) & 0xff] ^ t[3][(r >> 24) & 0xff];
}
constexpr std::size_t kLane = 256;       // bytes per lane of the 3-lane loop
constexpr std::size_t kShortLane = 64;   // and of the short one
constexpr ShiftTable kShiftLane = MakeShift(kLane);
constexpr ShiftTable kShiftShortLane = MakeShift(kShortLane);

#if defined(__x86_64__)
// Three independent crc32 chains over three adjacent lanes of `lane` bytes
// (the instruction's latency is 3 cycles, its throughput 1 per cycle), joined
// by Shift: about 2.3 times the serial speed on a 1 KiB entry.
__attribute__((target("sse4.2"))) inline std::uint64_t Crc32cLanes(std::byte const*& p, std::size_t& n, std::uint64_t c,
                                                                   std::size_t lane, ShiftTable const& shift) {
  while (n >= 3 * lane) {
    std::uint64_t c1 = 0;
    std::uint64_t c2 = 0;
    for (std::byte const* const end = p + lane; p < end; p += 8) {
      std::uint64_t v0 = 0;
      std::uint64_t v1 = 0;
      std::uint64_t v2 = 0;
      std::memcpy(&v0, p, 8);
      std::memcpy(&v1, p + lane, 8);
      std::memcpy(&v2, p + 2 * lane, 8);
      c = _mm_crc32_u64(c, v0);
      c1 = _mm_crc32_u64(c1, v1);
      c2 = _mm_crc32_u64(c2, v2);
    }
    c = Shift(shift, c) ^ c1;
    c = Shift(shift, c) ^ c2;
    p += 2 * lane;
    n -= 3 * lane;
  }
  return c;
}

__attribute__((target("sse4.2"))) std::uint32_t Crc32cHardware(std::byte const* p, std::size_t n, std::uint32_t crc) {
  std::uint64_t c = ~crc;
  c = Crc32cLanes(p, n, c, kLane, kShiftLane);
  c = Crc32cLanes(p, n, c, kShortLane, kShiftShortLane);
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t v = 0;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  auto c32 = static_cast<std::uint32_t>(c);
  for (; n > 0; ++p, --n) c32 = _mm_crc32_u8(c32, static_cast<std::uint8_t>(*p));
  return ~c32;
}
bool const kHaveSse42 = __builtin_cpu_supports("sse4.2") != 0;
#endif

// ---- little-endian fields ----------------------------------------------------------------
template <class T>
T Load(std::byte const* p) {
  T v{};
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void Store(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

constexpr std::uint64_t Align8(std::uint64_t n) { return (n + 7) & ~std::uint64_t{7}; }

// File header offsets (docs/recording.md, "File header").
constexpr std::size_t kHVersion = 8;
constexpr std::size_t kHHeaderSize = 12;
constexpr std::size_t kHCreated = 16;
constexpr std::size_t kHCapacity = 24;
constexpr std::size_t kHFlags = 32;
constexpr std::size_t kHNameLength = 36;
constexpr std::size_t kHCrc = 40;
constexpr std::size_t kMaxHeaderBytes = kFileHeaderFixedBytes + Align8(kMaxRingNameBytes);

// Entry header offsets (docs/recording.md, "Entries").
constexpr std::size_t kECrc = 0;
constexpr std::size_t kEMarker = 4;
constexpr std::size_t kEType = 6;
constexpr std::size_t kELength = 8;
constexpr std::size_t kEReserved = 12;
constexpr std::size_t kESequence = 16;
constexpr std::size_t kETimestamp = 24;

constexpr std::size_t kWindowBytes = std::size_t{256} * 1024;  // > the largest entry
constexpr std::uint64_t kBackwardSearchBytes = 16 << 20;

std::uint64_t RealtimeNs() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

[[noreturn]] void ThrowErrno(std::string const& what) { throw std::system_error(errno, std::generic_category(), what); }

std::string HexBytes(std::byte const* p, std::size_t n) {
  std::string out;
  char buf[4];
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%s%02x", i == 0 ? "" : " ", static_cast<unsigned>(p[i]));
    out += buf;
  }
  return out;
}

bool PreadAll(int fd, std::byte* p, std::size_t n, std::uint64_t offset, std::size_t& got) {
  got = 0;
  while (got < n) {
    ssize_t const r = ::pread(fd, p + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return true;
}

void PwriteAll(int fd, std::byte const* p, std::size_t n, std::uint64_t offset, std::string const& path) {
  while (n > 0) {
    ssize_t const r = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      ThrowErrno("writing " + path);
    }
    p += r;
    n -= static_cast<std::size_t>(r);
    offset += static_cast<std::uint64_t>(r);
  }
}

// Decodes and checks a file header; throws std::invalid_argument naming `path`.
FileHeader ParseHeader(std::string const& path, std::byte const* p, std::size_t n) {
  if (n < sizeof kMagic || std::memcmp(p, kMagic, sizeof kMagic) != 0) {
    throw std::invalid_argument(path + ": not a circbuf recording (expected magic \"CBRECORD\", found " +
                                (n == 0 ? std::string("an empty file") : HexBytes(p, std::min<std::size_t>(n, 8))) +
                                ")");
  }
  if (n < kFileHeaderFixedBytes) {
    throw std::invalid_argument(path + ": circbuf recording with a truncated header (" + std::to_string(n) +
                                " bytes, at least " + std::to_string(kFileHeaderFixedBytes) + " expected)");
  }
  FileHeader h;
  h.version = Load<std::uint32_t>(p + kHVersion);
  if (h.version != kVersion) {
    throw std::invalid_argument(path + ": circbuf recording format version " + std::to_string(h.version) +
                                ", this library reads version " + std::to_string(kVersion));
  }
  h.header_size = Load<std::uint32_t>(p + kHHeaderSize);
  auto const name_length = Load<std::uint32_t>(p + kHNameLength);
  if (name_length > kMaxRingNameBytes || h.header_size != kFileHeaderFixedBytes + Align8(name_length)) {
    throw std::invalid_argument(path + ": damaged circbuf recording header (header size " +
                                std::to_string(h.header_size) + ", ring name length " + std::to_string(name_length) +
                                ")");
  }
  if (n < h.header_size) {
    throw std::invalid_argument(path + ": circbuf recording with a truncated header (" + std::to_string(n) + " of " +
                                std::to_string(h.header_size) + " bytes)");
  }
  std::array<std::byte, kMaxHeaderBytes> copy{};
  std::memcpy(copy.data(), p, h.header_size);
  Store<std::uint32_t>(copy.data() + kHCrc, 0);
  auto const crc = Crc32c(std::span<std::byte const>(copy.data(), h.header_size));
  if (crc != Load<std::uint32_t>(p + kHCrc)) {
    throw std::invalid_argument(path + ": damaged circbuf recording header (CRC32C mismatch)");
  }
  h.created_ns = Load<std::uint64_t>(p + kHCreated);
  h.ring_capacity = Load<std::uint64_t>(p + kHCapacity);
  h.flags = Load<std::uint32_t>(p + kHFlags);
  h.ring_name.assign(reinterpret_cast<char const*>(p + kFileHeaderFixedBytes), name_length);
  return h;
}

std::vector<std::byte> EncodeHeader(FileHeader const& h) {
  std::size_t const name_length = std::min(h.ring_name.size(), kMaxRingNameBytes);
  std::size_t const size = kFileHeaderFixedBytes + Align8(name_length);
  std::vector<std::byte> out(size);
  std::memcpy(out.data(), kMagic, sizeof kMagic);
  Store<std::uint32_t>(out.data() + kHVersion, kVersion);
  Store<std::uint32_t>(out.data() + kHHeaderSize, static_cast<std::uint32_t>(size));
  Store<std::uint64_t>(out.data() + kHCreated, h.created_ns);
  Store<std::uint64_t>(out.data() + kHCapacity, h.ring_capacity);
  Store<std::uint32_t>(out.data() + kHFlags, h.flags);
  Store<std::uint32_t>(out.data() + kHNameLength, static_cast<std::uint32_t>(name_length));
  std::memcpy(out.data() + kFileHeaderFixedBytes, h.ring_name.data(), name_length);
  Store<std::uint32_t>(out.data() + kHCrc, Crc32c(out));
  return out;
}

}  // namespace record_impl
using namespace record_impl;  // NOLINT(google-build-using-namespace): this unit's own helpers

std::uint32_t Crc32cSoftware(std::span<std::byte const> bytes, std::uint32_t crc) noexcept {
  crc = ~crc;
  for (std::byte const b : bytes) crc = kTable[(crc ^ static_cast<std::uint8_t>(b)) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::uint32_t Crc32c(std::span<std::byte const> bytes, std::uint32_t crc) noexcept {
#if defined(__x86_64__)
  if (kHaveSse42) return Crc32cHardware(bytes.data(), bytes.size(), crc);
#endif
  return Crc32cSoftware(bytes, crc);
}

// ---- RecordingWriter ---------------------------------------------------------------------
RecordingWriter::RecordingWriter(std::string path, WriterOptions options)
    : path_(std::move(path)), options_(std::move(options)) {
  buffer_.resize(std::max<std::size_t>(options_.buffer_bytes, std::size_t{128} * 1024));
  points_.resize(kMaxIndexPoints * kIndexPointBytes);
  if (options_.rotate_bytes > 0) {  // go on in the newest part
    for (unsigned n = 1; n < 1000000; ++n) {
      struct stat st{};
      if (::stat((path_ + "." + std::to_string(n)).c_str(), &st) != 0) break;
      rotation_ = n;
    }
  }
  OpenFile(rotation_ == 0 ? path_ : path_ + "." + std::to_string(rotation_));
}

RecordingWriter::~RecordingWriter() {
  try {
    Close();
  } catch (...) {  // NOLINT(bugprone-empty-catch): Close() reports errors to those who ask
  }
}

void RecordingWriter::OpenFile(std::string const& file) {
  current_ = file;
  int const fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) ThrowErrno("opening " + file);
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    int const e = errno;
    ::close(fd);
    throw std::system_error(e, std::generic_category(), "stat " + file);
  }
  opened_ = {};
  last_index_offset_ = 0;
  point_count_ = 0;
  since_point_entries_ = kIndexEveryEntries;
  buffered_ = 0;
  if (st.st_size == 0) {
    std::vector<std::byte> const header = EncodeHeader(
        {.created_ns = RealtimeNs(), .ring_name = options_.ring_name, .ring_capacity = options_.ring_capacity});
    try {
      PwriteAll(fd, header.data(), header.size(), 0, file);
    } catch (...) {
      ::close(fd);
      throw;
    }
    size_ = header.size();
  } else {
    opened_.existed = true;
    try {
      RecordingReader reader(file);  // refuses a foreign file or another version
      (void)reader.Info();
      opened_.corrupt_entries = reader.CorruptCount();
      std::uint64_t const end = reader.ValidEnd();
      if (end < static_cast<std::uint64_t>(st.st_size)) {
        if (::ftruncate(fd, static_cast<off_t>(end)) != 0) ThrowErrno("truncating the torn tail of " + file);
        opened_.torn_bytes = static_cast<std::uint64_t>(st.st_size) - end;
      }
      size_ = end;
      last_index_offset_ = reader.LastIndexOffset();
    } catch (...) {
      ::close(fd);
      throw;
    }
  }
  last_point_offset_ = size_;
  fd_ = fd;
}

void RecordingWriter::Append(std::uint64_t sequence, std::uint64_t timestamp_ns, std::span<std::byte const> payload) {
  if (payload.size() > kMaxMessageBytes) {
    throw std::length_error("circbuf recording: message of " + std::to_string(payload.size()) + " bytes (at most " +
                            std::to_string(kMaxMessageBytes) + ")");
  }
  Put(EntryType::kMessage, sequence, timestamp_ns, payload, {});
}

void RecordingWriter::AppendGap(std::uint64_t first_sequence, std::uint64_t count, std::uint64_t timestamp_ns) {
  std::array<std::byte, kGapPayloadBytes> payload{};
  Store<std::uint64_t>(payload.data(), count);
  Put(EntryType::kGap, first_sequence, timestamp_ns, payload, {});
}

void RecordingWriter::MaybeRotate() {
  if (options_.rotate_bytes == 0 || size_ < options_.rotate_bytes) return;
  WriteIndexBlock();
  Flush();
  ::close(fd_);
  fd_ = -1;
  ++rotation_;
  OpenFile(path_ + "." + std::to_string(rotation_));
}

void RecordingWriter::Put(EntryType type, std::uint64_t sequence, std::uint64_t timestamp_ns,
                          std::span<std::byte const> a, std::span<std::byte const> b) {
  if (fd_ < 0) throw std::logic_error("circbuf recording: " + path_ + " is closed");
  if (type != EntryType::kIndex) {
    MaybeRotate();
    if (since_point_entries_ >= kIndexEveryEntries || size_ - last_point_offset_ >= kIndexEveryBytes) {
      if (point_count_ == kMaxIndexPoints) WriteIndexBlock();
      std::byte* const p = points_.data() + point_count_ * kIndexPointBytes;
      Store<std::uint64_t>(p, sequence);
      Store<std::uint64_t>(p + 8, timestamp_ns);
      Store<std::uint64_t>(p + 16, size_);
      ++point_count_;
      since_point_entries_ = 0;
      last_point_offset_ = size_;
    }
    ++since_point_entries_;
    ++entries_;
  }
  std::size_t const length = a.size() + b.size();
  std::size_t const total = kEntryHeaderBytes + Align8(length);
  if (buffer_.size() - buffered_ < total) Flush();
  std::byte* const e = buffer_.data() + buffered_;
  std::memset(e, 0, kEntryHeaderBytes);
  Store<std::uint16_t>(e + kEMarker, kEntryMarker);
  Store<std::uint16_t>(e + kEType, static_cast<std::uint16_t>(type));
  Store<std::uint32_t>(e + kELength, static_cast<std::uint32_t>(length));
  Store<std::uint64_t>(e + kESequence, sequence);
  Store<std::uint64_t>(e + kETimestamp, timestamp_ns);
  if (!a.empty()) std::memcpy(e + kEntryHeaderBytes, a.data(), a.size());
  if (!b.empty()) std::memcpy(e + kEntryHeaderBytes + a.size(), b.data(), b.size());
  std::memset(e + kEntryHeaderBytes + length, 0, total - kEntryHeaderBytes - length);
  Store<std::uint32_t>(e + kECrc, Crc32c(std::span<std::byte const>(e + 4, kEntryHeaderBytes - 4 + length)));
  buffered_ += total;
  size_ += total;
}

void RecordingWriter::WriteIndexBlock() {
  if (point_count_ == 0 || fd_ < 0) return;
  std::array<std::byte, kIndexHeadBytes> head{};
  Store<std::uint64_t>(head.data(), last_index_offset_);
  Store<std::uint64_t>(head.data() + 8, point_count_);
  std::byte const* const last = points_.data() + (point_count_ - 1) * kIndexPointBytes;
  std::uint64_t const offset = size_;
  Put(EntryType::kIndex, Load<std::uint64_t>(last), Load<std::uint64_t>(last + 8), head,
      std::span<std::byte const>(points_.data(), point_count_ * kIndexPointBytes));
  last_index_offset_ = offset;
  point_count_ = 0;
}

void RecordingWriter::Flush() {
  if (fd_ < 0 || buffered_ == 0) return;
  PwriteAll(fd_, buffer_.data(), buffered_, size_ - buffered_, current_);
  buffered_ = 0;
}

void RecordingWriter::Sync() {
  Flush();
  if (fd_ >= 0 && ::fdatasync(fd_) != 0) ThrowErrno("fdatasync " + current_);
}

void RecordingWriter::Close() {
  if (fd_ < 0) return;
  WriteIndexBlock();
  try {
    Flush();
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
  int const fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) ThrowErrno("closing " + current_);
}

// ---- RecordingReader ---------------------------------------------------------------------
RecordingReader::RecordingReader(std::string path)
    : path_(std::move(path)), fd_(::open(path_.c_str(), O_RDONLY | O_CLOEXEC)) {
  if (fd_ < 0) ThrowErrno("opening " + path_);
  try {
    struct stat st{};
    if (::fstat(fd_, &st) != 0) ThrowErrno("stat " + path_);
    if (!S_ISREG(st.st_mode)) throw std::invalid_argument(path_ + ": not a regular file");
    file_size_ = static_cast<std::uint64_t>(st.st_size);
    window_.resize(kWindowBytes);
    std::array<std::byte, kMaxHeaderBytes> head{};
    std::size_t got = 0;
    if (!PreadAll(fd_, head.data(), head.size(), 0, got)) ThrowErrno("reading " + path_);
    header_ = ParseHeader(path_, head.data(), got);
    offset_ = header_.header_size;
    valid_end_ = header_.header_size;
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

RecordingReader::~RecordingReader() {
  if (fd_ >= 0) ::close(fd_);
}

bool RecordingReader::Fetch(std::uint64_t offset, std::size_t n, std::byte const*& p) {
  if (n > window_.size() || offset > file_size_ || n > file_size_ - offset) return false;
  if (offset < window_offset_ || offset + n > window_offset_ + window_size_) {
    // Centre a backward walk's window so that it keeps serving earlier offsets.
    std::uint64_t start = offset;
    if (offset < window_offset_ && offset + n > window_.size()) start = offset + n - window_.size();
    std::size_t const want = static_cast<std::size_t>(std::min<std::uint64_t>(window_.size(), file_size_ - start));
    std::size_t got = 0;
    window_offset_ = start;
    window_size_ = 0;
    if (!PreadAll(fd_, window_.data(), want, start, got)) return false;
    window_size_ = got;
    if (offset + n > window_offset_ + window_size_) return false;  // the file shrank under us
  }
  p = window_.data() + (offset - window_offset_);
  return true;
}

bool RecordingReader::Valid(std::uint64_t offset, Entry& out, std::uint64_t& next) {
  if (offset % 8 != 0 || offset < header_.header_size) return false;
  std::byte const* h = nullptr;
  if (!Fetch(offset, kEntryHeaderBytes, h)) return false;
  if (Load<std::uint16_t>(h + kEMarker) != kEntryMarker || Load<std::uint32_t>(h + kEReserved) != 0) return false;
  auto const type = Load<std::uint16_t>(h + kEType);
  auto const length = Load<std::uint32_t>(h + kELength);
  switch (static_cast<EntryType>(type)) {
    case EntryType::kMessage:
      if (length > kMaxMessageBytes) return false;
      break;
    case EntryType::kGap:
      if (length != kGapPayloadBytes) return false;
      break;
    case EntryType::kIndex:
      if (length < kIndexHeadBytes + kIndexPointBytes ||
          length > kIndexHeadBytes + kMaxIndexPoints * kIndexPointBytes ||
          (length - kIndexHeadBytes) % kIndexPointBytes != 0) {
        return false;
      }
      break;
    default: return false;
  }
  std::uint64_t const total = kEntryHeaderBytes + Align8(length);
  if (total > file_size_ - offset) return false;
  std::byte const* e = nullptr;
  if (!Fetch(offset, static_cast<std::size_t>(total), e)) return false;
  if (Crc32c(std::span<std::byte const>(e + 4, kEntryHeaderBytes - 4 + length)) != Load<std::uint32_t>(e + kECrc)) {
    return false;
  }
  out.type = static_cast<EntryType>(type);
  out.sequence = Load<std::uint64_t>(e + kESequence);
  out.timestamp_ns = Load<std::uint64_t>(e + kETimestamp);
  out.offset = offset;
  out.lost = 0;
  out.payload = std::span<std::byte const>(e + kEntryHeaderBytes, length);
  if (out.type == EntryType::kGap) {
    out.lost = Load<std::uint64_t>(e + kEntryHeaderBytes);
    if (out.lost == 0) return false;
    out.payload = {};
  } else if (out.type == EntryType::kIndex) {
    auto const prev = Load<std::uint64_t>(e + kEntryHeaderBytes);
    auto const count = Load<std::uint64_t>(e + kEntryHeaderBytes + 8);
    if (prev >= offset || count != (length - kIndexHeadBytes) / kIndexPointBytes) return false;
  }
  next = offset + total;
  return true;
}

bool RecordingReader::NextAny(Entry& out) {
  while (offset_ < file_size_) {
    std::uint64_t next = 0;
    if (Valid(offset_, out, next)) {
      offset_ = next;
      valid_end_ = std::max(valid_end_, next);
      if (out.type == EntryType::kIndex) last_index_ = std::max(last_index_, out.offset);
      return true;
    }
    // Damaged: resynchronise on the next 8-aligned offset where a valid entry starts.
    std::uint64_t const start = offset_;
    std::uint64_t found = 0;
    for (std::uint64_t o = (start | 7) + 1; o <= file_size_ && file_size_ - o >= kEntryHeaderBytes; o += 8) {
      if (Valid(o, out, next)) {
        found = o;
        break;
      }
    }
    if (found == 0) {  // nothing valid after it: a torn (or damaged) tail
      torn_bytes_ = file_size_ - start;
      offset_ = file_size_;
      return false;
    }
    if (start >= corrupt_high_) {
      ++corrupt_count_;
      if (corrupt_.size() < kMaxCorruptListed) corrupt_.push_back({start, found - start});
      corrupt_high_ = found;
    }
    offset_ = found;
  }
  return false;
}

bool RecordingReader::Next(Entry& out) {
  while (NextAny(out)) {
    if (out.type != EntryType::kIndex) return true;
  }
  return false;
}

void RecordingReader::Rewind() { offset_ = header_.header_size; }

std::size_t RecordingReader::IndexPoints() {
  BuildIndex();
  return points_.size();
}

void RecordingReader::BuildIndex() {
  if (index_built_) return;
  index_built_ = true;
  points_.clear();
  Entry e;
  std::uint64_t next = 0;
  // The last index block: walk back from the end (bounded), then follow the chain.
  std::uint64_t last = 0;
  std::uint64_t const floor = file_size_ > kBackwardSearchBytes ? file_size_ - kBackwardSearchBytes : 0;
  for (std::uint64_t o = (file_size_ & ~std::uint64_t{7}); o >= header_.header_size && o >= floor; o -= 8) {
    if (Valid(o, e, next) && e.type == EntryType::kIndex) {
      last = o;
      break;
    }
    if (o < 8) break;
  }
  bool chain_ok = last != 0;
  for (std::uint64_t at = last, blocks = 0; at != 0 && chain_ok; ++blocks) {
    if (blocks > file_size_ / kEntryHeaderBytes || !Valid(at, e, next) || e.type != EntryType::kIndex) {
      chain_ok = false;
      break;
    }
    std::byte const* p = e.payload.data();
    auto const prev = Load<std::uint64_t>(p);
    auto const count = Load<std::uint64_t>(p + 8);
    for (std::uint64_t i = 0; i < count; ++i) {
      std::byte const* q = p + kIndexHeadBytes + i * kIndexPointBytes;
      Point const point{Load<std::uint64_t>(q), Load<std::uint64_t>(q + 8), Load<std::uint64_t>(q + 16)};
      if (point.offset % 8 == 0 && point.offset >= header_.header_size && point.offset < at) points_.push_back(point);
    }
    at = prev;  // Valid() checked prev < at: the walk ends
  }
  if (!chain_ok) {  // no index (or a broken one): rebuild by scanning
    points_.clear();
    std::uint64_t const saved = offset_;
    Rewind();
    std::uint64_t n = 0;
    while (Next(e)) {
      if (n++ % kIndexEveryEntries == 0) points_.push_back({e.sequence, e.timestamp_ns, e.offset});
    }
    offset_ = saved;
  }
  std::ranges::sort(points_, {}, &Point::offset);
}

void RecordingReader::SeekTo(std::uint64_t key, bool by_time) {
  BuildIndex();
  std::uint64_t start = header_.header_size;
  for (Point const& p : points_) {  // points in file order; keys non-decreasing
    if ((by_time ? p.timestamp_ns : p.sequence) >= key) break;
    start = p.offset;
  }
  offset_ = start;
  Entry e;
  while (Next(e)) {
    bool const reached = by_time                     ? e.timestamp_ns >= key
                         : e.type == EntryType::kGap ? e.sequence + e.lost > key || e.sequence >= key
                                                     : e.sequence >= key;
    if (reached) {
      offset_ = e.offset;
      return;
    }
  }
}

void RecordingReader::SeekSequence(std::uint64_t sequence) { SeekTo(sequence, false); }
void RecordingReader::SeekTime(std::uint64_t ns) { SeekTo(ns, true); }

Summary RecordingReader::Info() {
  Summary s;
  s.header = header_;
  s.file_bytes = file_size_;
  corrupt_count_ = 0;
  corrupt_.clear();
  corrupt_high_ = 0;
  torn_bytes_ = 0;
  Rewind();
  Entry e;
  bool first = true;
  while (NextAny(e)) {
    if (e.type == EntryType::kIndex) {
      ++s.index_blocks;
      continue;
    }
    if (first) {
      s.first_sequence = e.sequence;
      s.first_ns = e.timestamp_ns;
      first = false;
    }
    s.last_ns = e.timestamp_ns;
    if (e.type == EntryType::kMessage) {
      ++s.messages;
      s.payload_bytes += e.payload.size();
      s.last_sequence = e.sequence;
    } else {
      ++s.gaps;
      s.lost += e.lost;
      s.last_sequence = e.sequence + e.lost - 1;
    }
  }
  s.corrupt_entries = corrupt_count_;
  s.corrupt = corrupt_;
  s.torn_bytes = torn_bytes_;
  Rewind();
  return s;
}

}  // namespace circbuf::Recording
