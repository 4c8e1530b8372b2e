// circbuf.record: the recording file format through RecordingWriter and
// RecordingReader (docs/recording.md): byte-exact round trips, gaps, seeks,
// torn tails, append repair, CRC damage, foreign files and other versions.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

import circbuf;

namespace rec = circbuf::Recording;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char pattern[] = "/tmp/circbuf-rec-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) std::abort();
    path = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(TempDir const&) = delete;
  TempDir& operator=(TempDir const&) = delete;
  [[nodiscard]] std::string File(std::string const& name) const { return path + "/" + name; }
};

std::vector<std::byte> Payload(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> out(n);
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  return out;
}

std::vector<char> ReadAll(std::string const& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WriteAll(std::string const& file, std::vector<char> const& bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<rec::Entry> All(rec::RecordingReader& reader, std::vector<std::vector<std::byte>>* payloads = nullptr) {
  std::vector<rec::Entry> out;
  rec::Entry e;
  while (reader.Next(e)) {
    out.push_back(e);
    if (payloads != nullptr) payloads->emplace_back(e.payload.begin(), e.payload.end());
  }
  return out;
}

TEST(Crc32c, KnownVectors) {
  std::string const digits = "123456789";
  auto const bytes = std::as_bytes(std::span(digits.data(), digits.size()));
  EXPECT_EQ(rec::Crc32c(bytes), 0xE3069283u);
  EXPECT_EQ(rec::Crc32cSoftware(bytes), 0xE3069283u);
  EXPECT_EQ(rec::Crc32c({}), 0u);
  // Hardware and table agree on every length and alignment; chaining works.
  // Lengths on both sides of the 3-lane loops (3 x 256 and 3 x 64 bytes).
  auto const data = Payload(70000, 3);
  for (std::size_t off = 0; off < 9; ++off) {
    for (std::size_t n : {0,   1,   7,   8,   9,   63,  64,  65,  191,  192,  193,  200,  255,       256,
                          500, 767, 768, 769, 775, 959, 960, 961, 1000, 1048, 1559, 4096, 65535 + 24}) {
      auto const s = std::span<std::byte const>(data).subspan(off, n);
      ASSERT_EQ(rec::Crc32c(s), rec::Crc32cSoftware(s)) << off << " " << n;
      ASSERT_EQ(rec::Crc32c(s.subspan(n / 2), rec::Crc32c(s.first(n / 2))), rec::Crc32c(s));
    }
  }
}

TEST(Recording, RoundTripByteExactAcrossSizes) {
  TempDir dir;
  std::string const file = dir.File("a.cbrec");
  std::vector<std::size_t> sizes = {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 255, 4096, 65534, 65535};
  for (std::size_t n = 3; n < 65535; n = n * 5 / 3 + 1) sizes.push_back(n);
  {
    rec::RecordingWriter writer(file, {.ring_name = "/quotes", .ring_capacity = 1 << 20});
    EXPECT_FALSE(writer.Opened().existed);
    for (std::size_t i = 0; i < sizes.size(); ++i) writer.Append(100 + i, 1000 * i, Payload(sizes[i], i));
    EXPECT_THROW(writer.Append(1, 1, Payload(65536, 0)), std::length_error);
    writer.Close();
  }
  rec::RecordingReader reader(file);
  EXPECT_EQ(reader.Header().ring_name, "/quotes");
  EXPECT_EQ(reader.Header().ring_capacity, 1u << 20);
  EXPECT_EQ(reader.Header().version, rec::kVersion);
  EXPECT_GT(reader.Header().created_ns, 0u);
  std::vector<std::vector<std::byte>> payloads;
  auto const entries = All(reader, &payloads);
  ASSERT_EQ(entries.size(), sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_EQ(entries[i].type, rec::EntryType::kMessage);
    EXPECT_EQ(entries[i].sequence, 100 + i);
    EXPECT_EQ(entries[i].timestamp_ns, 1000 * i);
    EXPECT_EQ(entries[i].offset % 8, 0u);
    ASSERT_EQ(payloads[i], Payload(sizes[i], i)) << "size " << sizes[i];
  }
  EXPECT_EQ(reader.CorruptCount(), 0u);
  EXPECT_EQ(reader.TornBytes(), 0u);
  auto const s = reader.Info();
  EXPECT_EQ(s.messages, sizes.size());
  EXPECT_EQ(s.first_sequence, 100u);
  EXPECT_EQ(s.last_sequence, 100 + sizes.size() - 1);
  EXPECT_EQ(s.file_bytes, std::filesystem::file_size(file));
}

TEST(Recording, GapsPreservedExactly) {
  TempDir dir;
  std::string const file = dir.File("g.cbrec");
  {
    rec::RecordingWriter writer(file);
    writer.Append(1, 10, Payload(5, 1));
    writer.AppendGap(2, 1, 11);
    writer.Append(3, 12, Payload(5, 3));
    writer.AppendGap(4, 123456789012ULL, 13);
    writer.Append(123456789016ULL, 14, Payload(5, 4));
  }
  rec::RecordingReader reader(file);
  auto const e = All(reader);
  ASSERT_EQ(e.size(), 5u);
  EXPECT_EQ(e[1].type, rec::EntryType::kGap);
  EXPECT_EQ(e[1].sequence, 2u);
  EXPECT_EQ(e[1].lost, 1u);
  EXPECT_EQ(e[3].lost, 123456789012ULL);
  EXPECT_EQ(e[3].timestamp_ns, 13u);
  auto const s = reader.Info();
  EXPECT_EQ(s.messages, 3u);
  EXPECT_EQ(s.gaps, 2u);
  EXPECT_EQ(s.lost, 123456789013ULL);
  EXPECT_EQ(s.first_ns, 10u);
  EXPECT_EQ(s.last_ns, 14u);
}

void CheckSeeks(std::string const& file, std::uint64_t n) {
  rec::RecordingReader reader(file);
  EXPECT_GT(reader.IndexPoints(), 0u);
  for (std::uint64_t target : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{1023}, std::uint64_t{1024},
                               std::uint64_t{5000}, n / 2, n - 1}) {
    reader.SeekSequence(target);
    rec::Entry e;
    ASSERT_TRUE(reader.Next(e)) << target;
    EXPECT_EQ(e.sequence, target);
    reader.SeekTime(target * 100 + 50);  // the next message's time
    ASSERT_TRUE(reader.Next(e));
    EXPECT_EQ(e.sequence, target + 1 == n ? n : target + 1) << target;
  }
  reader.SeekSequence(n + 5);
  rec::Entry e;
  EXPECT_FALSE(reader.Next(e));
}

TEST(Recording, SeekBySequenceAndTime) {
  TempDir dir;
  std::string const file = dir.File("s.cbrec");
  constexpr std::uint64_t kN = 100000;
  {
    rec::RecordingWriter writer(file);
    for (std::uint64_t i = 0; i < kN; ++i) writer.Append(i, i * 100, Payload(1 + i % 40, i));
    writer.Append(kN, kN * 100, Payload(1, 0));  // the one after the last target
  }
  CheckSeeks(file, kN);
  // The same with the index gone: every index block's marker broken, so it is rebuilt by scanning.
  auto bytes = ReadAll(file);
  rec::RecordingReader probe(file);
  std::vector<std::uint64_t> index_offsets;
  // Find the index blocks by a raw walk: type field at +6 == 3.
  for (std::size_t o = probe.Header().header_size; o + 32 <= bytes.size();) {
    auto const type = static_cast<std::uint16_t>(static_cast<unsigned char>(bytes[o + 6]) |
                                                 (static_cast<unsigned char>(bytes[o + 7]) << 8));
    std::uint32_t length = 0;
    std::memcpy(&length, &bytes[o + 8], 4);
    if (type == 3) index_offsets.push_back(o);
    o += 32 + ((length + 7) & ~7u);
  }
  ASSERT_FALSE(index_offsets.empty());
  for (auto o : index_offsets) bytes[o + 20] ^= 1;  // inside the CRC
  WriteAll(file, bytes);
  CheckSeeks(file, kN);
  rec::RecordingReader damaged(file);
  auto const info = damaged.Info();  // the last block is the file's last entry: a damaged tail
  EXPECT_EQ(info.corrupt_entries + (info.torn_bytes > 0 ? 1 : 0), index_offsets.size());
  EXPECT_EQ(info.messages, kN + 1);
}

TEST(Recording, TruncatedAtEveryOffsetReadsUpToLastCompleteEntry) {
  TempDir dir;
  std::string const file = dir.File("t.cbrec");
  std::vector<std::uint64_t> ends;  // file size after each entry
  {
    rec::RecordingWriter writer(file, {.ring_name = "/t"});
    for (std::uint64_t i = 0; i < 12; ++i) {
      if (i == 5) {
        writer.AppendGap(i, 3, i);
      } else {
        writer.Append(i, i, Payload(i * 13 % 40, i));
      }
      writer.Flush();
      ends.push_back(writer.Size());
    }
  }
  auto const full = ReadAll(file);
  rec::RecordingReader whole(file);
  std::uint64_t const header_size = whole.Header().header_size;
  for (std::size_t cut = header_size; cut <= full.size(); ++cut) {
    std::string const part = dir.File("cut");
    WriteAll(part, std::vector<char>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut)));
    rec::RecordingReader reader(part);
    auto const entries = All(reader);
    std::size_t complete = 0;
    while (complete < ends.size() && ends[complete] <= cut) ++complete;
    ASSERT_EQ(entries.size(), complete) << "cut at " << cut;
    // After the last message the close wrote an index block: a cut inside it is a torn tail too.
    std::uint64_t const valid_end = cut == full.size() ? cut : complete == 0 ? header_size : ends[complete - 1];
    ASSERT_EQ(reader.TornBytes(), cut - valid_end) << "cut at " << cut;
    ASSERT_EQ(reader.ValidEnd(), valid_end) << "cut at " << cut;
    ASSERT_EQ(reader.CorruptCount(), 0u);
  }
  // A file cut inside its header is refused, naming the file.
  for (std::size_t cut : {std::size_t{0}, std::size_t{3}, std::size_t{8}, std::size_t{47}, header_size - 1}) {
    std::string const part = dir.File("head");
    WriteAll(part, std::vector<char>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut)));
    EXPECT_THROW(rec::RecordingReader{part}, std::invalid_argument) << cut;
  }
}

TEST(Recording, AppendAfterTornTailRepairsAndContinues) {
  TempDir dir;
  std::string const file = dir.File("r.cbrec");
  std::uint64_t after_three = 0;
  {
    rec::RecordingWriter writer(file);
    for (std::uint64_t i = 0; i < 3; ++i) writer.Append(i, i, Payload(20, i));
    writer.Flush();
    after_three = writer.Size();
    writer.Append(3, 3, Payload(1000, 3));
    writer.Flush();
  }
  auto bytes = ReadAll(file);
  bytes.resize(after_three + 500);  // torn inside entry 3
  WriteAll(file, bytes);
  {
    rec::RecordingWriter writer(file);
    EXPECT_TRUE(writer.Opened().existed);
    EXPECT_EQ(writer.Opened().torn_bytes, 500u);
    EXPECT_EQ(std::filesystem::file_size(file), after_three);
    writer.Append(3, 30, Payload(7, 33));
    writer.Append(4, 40, Payload(8, 44));
  }
  rec::RecordingReader reader(file);
  std::vector<std::vector<std::byte>> payloads;
  auto const e = All(reader, &payloads);
  ASSERT_EQ(e.size(), 5u);
  EXPECT_EQ(e[3].sequence, 3u);
  EXPECT_EQ(payloads[3], Payload(7, 33));
  EXPECT_EQ(payloads[4], Payload(8, 44));
  auto const s = reader.Info();
  EXPECT_EQ(s.torn_bytes, 0u);
  EXPECT_EQ(s.corrupt_entries, 0u);
}

TEST(Recording, FlippedByteIsDetectedAndTheRestStaysReadable) {
  TempDir dir;
  std::string const file = dir.File("f.cbrec");
  std::vector<std::uint64_t> starts;
  {
    rec::RecordingWriter writer(file);
    for (std::uint64_t i = 0; i < 10; ++i) {
      starts.push_back(writer.Size());
      writer.Append(i, i, Payload(100, i));
    }
  }
  auto const original = ReadAll(file);
  // Every byte of entry 4 (header, payload, padding excluded: not covered).
  for (std::uint64_t at = starts[4]; at < starts[4] + 32 + 100; ++at) {
    auto bytes = original;
    bytes[at] = static_cast<char>(bytes[at] ^ 0x40);
    WriteAll(file, bytes);
    rec::RecordingReader reader(file);
    std::vector<std::vector<std::byte>> payloads;
    auto const e = All(reader, &payloads);
    ASSERT_EQ(e.size(), 9u) << "flip at " << at;
    for (std::size_t i = 0, seq = 0; i < e.size(); ++i, ++seq) {
      if (seq == 4) ++seq;
      ASSERT_EQ(e[i].sequence, seq);
      ASSERT_EQ(payloads[i], Payload(100, seq));
    }
    ASSERT_EQ(reader.CorruptCount(), 1u);
    ASSERT_EQ(reader.Corrupt().at(0).offset, starts[4]);
    ASSERT_EQ(reader.Corrupt().at(0).bytes, starts[5] - starts[4]);
    ASSERT_EQ(reader.TornBytes(), 0u);
  }
}

TEST(Recording, ForeignFileAndUnknownVersionRefused) {
  TempDir dir;
  std::string const foreign = dir.File("foreign");
  WriteAll(foreign, {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'});
  try {
    rec::RecordingReader reader(foreign);
    FAIL() << "a foreign file was accepted";
  } catch (std::invalid_argument const& e) {
    EXPECT_NE(std::string(e.what()).find(foreign), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a circbuf recording"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("68 65 6c 6c"), std::string::npos) << e.what();
  }
  EXPECT_THROW(rec::RecordingWriter{foreign}, std::invalid_argument);
  EXPECT_EQ(ReadAll(foreign).size(), 12u);  // untouched

  std::string const file = dir.File("v.cbrec");
  {
    rec::RecordingWriter writer(file);
  }
  auto bytes = ReadAll(file);
  bytes[8] = 2;  // version 2
  WriteAll(file, bytes);
  try {
    rec::RecordingReader reader(file);
    FAIL() << "version 2 was accepted";
  } catch (std::invalid_argument const& e) {
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("version 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(rec::RecordingReader{dir.File("missing")}, std::system_error);
}

TEST(Recording, RotationBySize) {
  TempDir dir;
  std::string const file = dir.File("rot.cbrec");
  {
    rec::RecordingWriter writer(file, {.ring_name = {}, .ring_capacity = 0, .rotate_bytes = std::uint64_t{64} * 1024});
    for (std::uint64_t i = 0; i < 1000; ++i) writer.Append(i, i, Payload(1000, i));
  }
  std::uint64_t total = 0;
  std::uint64_t next = 0;
  for (int part = 0;; ++part) {
    std::string const name = part == 0 ? file : file + "." + std::to_string(part);
    if (!std::filesystem::exists(name)) break;
    EXPECT_LT(std::filesystem::file_size(name), 64u * 1024 + 2048);
    rec::RecordingReader reader(name);
    rec::Entry e;
    while (reader.Next(e)) {
      ASSERT_EQ(e.sequence, next++);
      ++total;
    }
  }
  EXPECT_EQ(total, 1000u);
  {  // appending goes on in the newest part
    rec::RecordingWriter writer(file, {.ring_name = {}, .ring_capacity = 0, .rotate_bytes = std::uint64_t{64} * 1024});
    EXPECT_NE(writer.CurrentPath(), file);
    EXPECT_TRUE(writer.Opened().existed);
  }
}

}  // namespace
