// Least privilege across users: modes and groups of a ring's files, and a
// reader running as another user (needs root to switch users; skipped
// otherwise).
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <span>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include "ring/support.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Child;
using circbuf::test::RingName;

namespace {

constexpr uid_t kNobody = 65534;  // Debian's nobody / nogroup
constexpr gid_t kNogroup = 65534;

struct stat StatOf(std::string const& path) {
  struct stat st{};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st;
}

// Becomes nobody:nogroup with no supplementary groups. Returns false on failure.
bool BecomeNobody() { return ::setgroups(0, nullptr) == 0 && ::setgid(kNogroup) == 0 && ::setuid(kNobody) == 0; }

}  // namespace

TEST(RingPermissions, DefaultIsOwnerOnlyForEveryFile) {
  RingName r;
  cb::Writer writer(cb::Spec::Make(r.name, 4096));
  for (std::string const& name : {r.name, circbuf::CircularBuffer::DataSegmentName(r.name)}) {
    EXPECT_EQ(StatOf("/dev/shm" + name).st_mode & 07777, 0600U) << name;
    EXPECT_EQ(StatOf("/dev/shm/sem." + name.substr(1)).st_mode & 07777, 0600U) << name;
  }
}

TEST(RingPermissions, ModeAndGroupApplyToSegmentsAndLocks) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to hand files to another group";
  RingName r;
  cb::Writer writer(cb::Spec::Make(r.name, 4096), {.mode = 0660, .group = kNogroup});
  for (std::string const& name : {r.name, circbuf::CircularBuffer::DataSegmentName(r.name)}) {
    for (std::string const& path : {"/dev/shm" + name, "/dev/shm/sem." + name.substr(1)}) {
      struct stat const st = StatOf(path);
      EXPECT_EQ(st.st_mode & 07777, 0660U) << path;
      EXPECT_EQ(st.st_gid, kNogroup) << path;
    }
  }
}

TEST(RingPermissions, ReaderOfAnotherUserIsRefusedByDefault) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  RingName r;
  cb::Writer writer(cb::Spec::Make(r.name, 4096));
  Child reader([&] {
    if (!BecomeNobody()) return 2;
    try {
      cb::Reader rd(cb::Spec::Make(r.name, 0));
    } catch (std::system_error const& e) {
      return e.code().value() == EACCES ? 0 : 3;
    }
    return 4;  // attached to a 0600 ring of another user
  });
  EXPECT_EQ(reader.Wait(), 0);
}

TEST(RingPermissions, ReaderOfAnotherUserInTheGroupReadsTheStream) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  RingName r;
  cb::Writer writer(cb::Spec::Make(r.name, 4096), {.mode = 0660, .group = kNogroup});
  std::array<std::byte, 3> const message{std::byte{1}, std::byte{2}, std::byte{3}};
  writer.Write(message);
  Child reader([&] {
    if (!BecomeNobody()) return 2;
    cb::Reader rd(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
    std::array<std::byte, 16> buf{};
    if (rd.Read(buf) != 3 || buf[0] != std::byte{1} || buf[2] != std::byte{3}) return 3;
    return 0;
  });
  EXPECT_EQ(reader.Wait(), 0);
}

TEST(RingPermissions, GroupTheCreatorIsNotInIsRefusedAndLeavesNothing) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become an unprivileged user";
  RingName r;
  Child creator([&] {
    if (!BecomeNobody()) return 2;
    try {
      cb::Writer w(cb::Spec::Make(r.name, 4096), {.mode = 0660, .group = 0});  // root's group
    } catch (std::system_error const& e) {
      if (e.code().value() != EPERM) return 3;
      if (std::string(e.what()).find("group 0") == std::string::npos) return 4;
      return 0;
    }
    return 5;
  });
  EXPECT_EQ(creator.Wait(), 0);
  for (std::string const& name : {r.name, circbuf::CircularBuffer::DataSegmentName(r.name)}) {
    EXPECT_FALSE(circbuf::test::ShmFileExists(name)) << name;
    EXPECT_FALSE(circbuf::test::SemFileExists(name)) << name;
  }
}
