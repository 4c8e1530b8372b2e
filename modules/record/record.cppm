// circbuf.record: recordings of a ring's messages in a file (issue 18).
//
// The file format is specified in docs/recording.md, the one source of
// truth; the constants below are its numbers. In short: a file header
// (magic "CBRECORD", version, header size, creation time, the source ring's
// name and capacity, flags, a CRC32C), then 8-byte aligned entries, each a
// 32-byte header (CRC32C, marker, type, length, sequence, receive time) and
// a payload: a message, a gap (the exact number of messages lost) or an
// index block (sparse (sequence, time, offset) points, chained backwards).
//
// This module knows nothing of the ring protocol beyond sequence numbers
// and payloads; `circbuf record` (tools/circbuf/record.cpp) feeds it from a
// Reader.
//
// Untrusted contents: RecordingReader trusts nothing in the file. Every
// length is bounded (65535 for a message, 8 for a gap, kMaxIndexPoints for
// an index block), every offset is checked against the file size, every
// entry's CRC is checked before anything of it is used, and every loop is
// bounded by the file size. A damaged entry is counted and skipped by
// scanning forward (8 bytes at a time) for the next entry whose header and
// CRC check out; an incomplete last entry is a torn tail and ignored.
module;

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

export module circbuf.record;

export namespace circbuf::Recording {

// ---- the format's numbers (docs/recording.md) ------------------------------------------
inline constexpr char kMagic[8] = {'C', 'B', 'R', 'E', 'C', 'O', 'R', 'D'};
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::size_t kFileHeaderFixedBytes = 48;  // then the ring name, padded to 8
inline constexpr std::size_t kMaxRingNameBytes = 255;
inline constexpr std::size_t kEntryHeaderBytes = 32;
inline constexpr std::uint16_t kEntryMarker = 0xCB5E;
inline constexpr std::size_t kMaxMessageBytes = 65535;
inline constexpr std::size_t kGapPayloadBytes = 8;
inline constexpr std::size_t kIndexPointBytes = 24;  // sequence, timestamp, offset
inline constexpr std::size_t kMaxIndexPoints = 64;
inline constexpr std::size_t kIndexHeadBytes = 16;  // previous index block's offset, point count
// The writer takes an index point every kIndexEveryEntries entries or
// kIndexEveryBytes bytes, whichever comes first.
inline constexpr std::uint64_t kIndexEveryEntries = 1024;
inline constexpr std::uint64_t kIndexEveryBytes = 1 << 20;

enum class EntryType : std::uint16_t {
  kMessage = 1,
  kGap = 2,
  kIndex = 3,
};

// CRC32C (Castagnoli), as in iSCSI/ext4: CRC32C("123456789") == 0xE3069283.
// SSE4.2 where the CPU has it, a table otherwise. `crc` continues a running
// value (start with 0).
[[nodiscard]] std::uint32_t Crc32c(std::span<std::byte const> bytes, std::uint32_t crc = 0) noexcept;
// The table-driven version, always (tests compare the two).
[[nodiscard]] std::uint32_t Crc32cSoftware(std::span<std::byte const> bytes, std::uint32_t crc = 0) noexcept;

// The file header, decoded.
struct FileHeader {
  std::uint32_t version = kVersion;
  std::uint32_t header_size = 0;  // bytes; the first entry starts here
  std::uint64_t created_ns = 0;   // CLOCK_REALTIME
  std::string ring_name;          // the source ring ("" if none)
  std::uint64_t ring_capacity = 0;
  std::uint32_t flags = 0;  // none defined yet; readers ignore them
};

// ---- writing -------------------------------------------------------------------------------
struct WriterOptions {
  std::string ring_name;           // recorded in a new file's header
  std::uint64_t ring_capacity = 0;  // likewise
  // > 0: once FILE reaches this many bytes, go on in FILE.1, then FILE.2, ...
  // (each a complete recording with its own header; see docs/recording.md).
  std::uint64_t rotate_bytes = 0;
  std::size_t buffer_bytes = 1 << 20;  // write(2) when this much is buffered (at least 128 KiB)
};

// What opening an existing file found.
struct AppendReport {
  bool existed = false;          // false: a new file was created
  std::uint64_t torn_bytes = 0;  // bytes cut from the end (an incomplete last entry)
  std::uint64_t corrupt_entries = 0;
};

// Appends to a recording. Opens FILE (or, with rotation, the highest
// FILE.N that exists) and creates it if missing; an existing file is
// validated (a foreign file or another version: std::invalid_argument
// naming the file and what was found), scanned to the end of its last
// complete valid entry, and truncated there (Opened().torn_bytes says how
// much was cut). Writes are buffered: no system call and no allocation per
// message. Not thread-safe. The destructor flushes (errors ignored: call
// Close() to see them).
class RecordingWriter final {
 public:
  explicit RecordingWriter(std::string path, WriterOptions options = {});
  ~RecordingWriter();
  RecordingWriter(RecordingWriter const&) = delete;
  RecordingWriter& operator=(RecordingWriter const&) = delete;
  RecordingWriter(RecordingWriter&&) = delete;
  RecordingWriter& operator=(RecordingWriter&&) = delete;

  // One message (at most kMaxMessageBytes: std::length_error otherwise).
  void Append(std::uint64_t sequence, std::uint64_t timestamp_ns, std::span<std::byte const> payload);
  // `count` messages lost, from `first_sequence` on.
  void AppendGap(std::uint64_t first_sequence, std::uint64_t count, std::uint64_t timestamp_ns);
  // Writes what is buffered (write(2); no fsync). std::system_error on failure.
  void Flush();
  // Flush + fdatasync.
  void Sync();
  // Writes the pending index block, flushes and closes. Idempotent.
  void Close();

  [[nodiscard]] inline AppendReport const& Opened() const noexcept { return opened_; }
  [[nodiscard]] inline std::string const& CurrentPath() const noexcept { return current_; }
  [[nodiscard]] inline std::uint64_t Entries() const noexcept { return entries_; }  // appended by this object
  [[nodiscard]] inline std::uint64_t Size() const noexcept { return size_; }  // of the current file, incl. buffered

 private:
  void OpenFile(std::string const& file);
  void Put(EntryType type, std::uint64_t sequence, std::uint64_t timestamp_ns, std::span<std::byte const> a,
           std::span<std::byte const> b);
  void WriteIndexBlock();
  void MaybeRotate();

  std::string path_;
  WriterOptions options_;
  std::string current_;
  unsigned rotation_ = 0;  // 0: FILE, n: FILE.n
  int fd_ = -1;
  std::vector<std::byte> buffer_;
  std::size_t buffered_ = 0;
  std::uint64_t size_ = 0;  // file size incl. buffered bytes
  std::uint64_t entries_ = 0;
  std::uint64_t since_point_entries_ = kIndexEveryEntries;  // take a point at the first entry
  std::uint64_t last_point_offset_ = 0;
  std::uint64_t last_index_offset_ = 0;  // 0: none
  std::vector<std::byte> points_;  // pending index points, encoded (reserved once)
  std::size_t point_count_ = 0;
  AppendReport opened_;
};

// ---- reading -------------------------------------------------------------------------------
struct Entry {
  EntryType type = EntryType::kMessage;
  std::uint64_t sequence = 0;  // kGap: the first lost message's sequence
  std::uint64_t timestamp_ns = 0;
  std::uint64_t lost = 0;  // kGap: messages lost
  std::uint64_t offset = 0;  // of the entry in the file
  std::span<std::byte const> payload;  // kMessage: valid until the next call on the reader
};

struct CorruptEntry {
  std::uint64_t offset;  // where the damage starts
  std::uint64_t bytes;  // skipped to the next valid entry
};

// What a recording holds (RecordingReader::Info).
struct Summary {
  FileHeader header;
  std::uint64_t file_bytes = 0;
  std::uint64_t messages = 0;
  std::uint64_t payload_bytes = 0;
  std::uint64_t first_sequence = 0;  // of the first message or gap (0 if none)
  std::uint64_t last_sequence = 0;  // of the last message (or last lost one)
  std::uint64_t first_ns = 0;
  std::uint64_t last_ns = 0;
  std::uint64_t gaps = 0;
  std::uint64_t lost = 0;  // messages lost in all gaps
  std::uint64_t index_blocks = 0;
  std::uint64_t corrupt_entries = 0;
  std::vector<CorruptEntry> corrupt;  // the first kMaxCorruptListed
  std::uint64_t torn_bytes = 0;  // an incomplete last entry, ignored
};
inline constexpr std::size_t kMaxCorruptListed = 100;

// Reads a recording entry by entry. The constructor checks the file header:
// std::system_error if it cannot be opened, std::invalid_argument naming
// the file and what was found if it is not a recording or another version.
// Reads with pread into an own buffer (no mmap: a file truncated meanwhile
// is a short read, not SIGBUS).
class RecordingReader final {
 public:
  explicit RecordingReader(std::string path);
  ~RecordingReader();
  RecordingReader(RecordingReader const&) = delete;
  RecordingReader& operator=(RecordingReader const&) = delete;
  RecordingReader(RecordingReader&&) = delete;
  RecordingReader& operator=(RecordingReader&&) = delete;

  [[nodiscard]] inline FileHeader const& Header() const noexcept { return header_; }
  [[nodiscard]] inline std::uint64_t FileBytes() const noexcept { return file_size_; }

  // The next message or gap (index blocks are skipped); false at the end.
  // Damaged entries on the way are counted (Corrupt()) and skipped.
  bool Next(Entry& out);
  // Positions at the first message or gap whose sequence is >= `sequence`
  // (whose timestamp is >= `ns`), through the index blocks, then a scan;
  // entries are assumed in the order they were recorded (sequence and
  // time non-decreasing, as `circbuf record` writes them).
  void SeekSequence(std::uint64_t sequence);
  void SeekTime(std::uint64_t ns);
  void Rewind();

  [[nodiscard]] inline std::uint64_t CorruptCount() const noexcept { return corrupt_count_; }
  [[nodiscard]] inline std::vector<CorruptEntry> const& Corrupt() const noexcept { return corrupt_; }
  [[nodiscard]] inline std::uint64_t TornBytes() const noexcept { return torn_bytes_; }
  // The offset after the last valid entry seen (where an appender goes on).
  [[nodiscard]] inline std::uint64_t ValidEnd() const noexcept { return valid_end_; }
  [[nodiscard]] inline std::uint64_t LastIndexOffset() const noexcept { return last_index_; }
  // Index points found (sequence, time, offset), in file order; built on the
  // first seek from the chain of index blocks, or by a scan if it is broken.
  [[nodiscard]] std::size_t IndexPoints();

  // Reads the whole file (from the start) and sums it up.
  [[nodiscard]] Summary Info();

 private:
  struct Point {
    std::uint64_t sequence;
    std::uint64_t timestamp_ns;
    std::uint64_t offset;
  };
  // Decodes a valid entry at `offset` (header, bounds, CRC); false if not.
  bool Valid(std::uint64_t offset, Entry& out, std::uint64_t& next);
  // Any valid entry (incl. index blocks) from offset_ on, resynchronising.
  bool NextAny(Entry& out);
  bool Fetch(std::uint64_t offset, std::size_t n, std::byte const*& p);
  void BuildIndex();
  void SeekTo(std::uint64_t key, bool by_time);

  std::string path_;
  int fd_ = -1;
  std::uint64_t file_size_ = 0;
  FileHeader header_;
  std::uint64_t offset_ = 0;
  std::vector<std::byte> window_;
  std::uint64_t window_offset_ = 0;
  std::size_t window_size_ = 0;
  std::uint64_t corrupt_count_ = 0;
  std::vector<CorruptEntry> corrupt_;
  std::uint64_t corrupt_high_ = 0;  // damage before this offset is already counted
  std::uint64_t torn_bytes_ = 0;
  std::uint64_t valid_end_ = 0;
  std::uint64_t last_index_ = 0;
  bool index_built_ = false;
  std::vector<Point> points_;
};

}  // namespace circbuf::Recording
