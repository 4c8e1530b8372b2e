// White-box: the segment header is where the layout comment says it is, in
// the real file in /dev/shm (not only in the struct).
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "support/process.hpp"

import circbuf.shm;

TEST(SegmentLayout, HeaderFieldsSitAtTheirDocumentedOffsetsInTheFile) {
  std::string const name = circbuf::test::UniqueName("layout");
  circbuf::SharedMemory shm(name, 1234);
  shm.AsSpan<std::byte>()[0] = std::byte{0xAB};
  std::byte page[circbuf::kMinPageSize + 1];
  int const fd = ::open(("/dev/shm/" + name.substr(1)).c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pread(fd, page, sizeof page, 0), static_cast<ssize_t>(sizeof page));
  ::close(fd);
  auto read = [&]<class T>(std::size_t offset, T) {
    T value;
    std::memcpy(&value, page + offset, sizeof value);
    return value;
  };
  EXPECT_EQ(read(0, std::uint32_t{}), 1U);                         // refcount
  EXPECT_EQ(read(64, std::uint64_t{}), circbuf::kSegmentMagic);    // magic
  EXPECT_EQ(read(72, std::uint32_t{}), circbuf::kSegmentVersion);  // version
  EXPECT_EQ(read(76, std::uint32_t{}), circbuf::kMinPageSize);        // header bytes
  EXPECT_EQ(read(80, std::uint64_t{}), 1234U);                     // user bytes
  EXPECT_EQ(read(88, std::int32_t{}), ::getpid());                 // creator pid
  EXPECT_EQ(page[circbuf::kMinPageSize], std::byte{0xAB});            // user region starts at 4096
  char magic[9] = {};
  std::memcpy(magic, page + 64, 8);
  EXPECT_STREQ(magic, "CCBSHM01");
}
