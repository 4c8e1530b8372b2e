// circbuf_roundtrip: the smallest complete use of circbuf across processes.
// A child process attaches as a reader and checks every message; the parent
// creates the ring as its writer and publishes them. Exit status 0 only if
// the child received every message intact and in order, so CI can run it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <span>
#include <string>

import circbuf;

namespace cb = circbuf::CircularBuffer;
using namespace std::chrono_literals;

// The hot calls on their own, kept out of line so that CI can disassemble
// them in this program, built against the installed package: Read and Write
// must be inlined into them, down to the copy, with no call left to Read,
// Write, Begin, Finish, Publish or memcpy (.ci/inline-check.sh).
extern "C" [[gnu::noinline]] int circbuf_consumer_read(cb::Reader& reader, std::byte* out, std::size_t size) {
  return reader.Read({out, size});
}
extern "C" [[gnu::noinline]] void circbuf_consumer_write(cb::Writer& writer, std::byte const* message,
                                                         std::size_t size) {
  writer.Write({message, size});
}

namespace {

constexpr std::uint64_t kMessages = 1000;

// Message i: its number, then (i % 200) bytes that depend on i.
std::size_t Fill(std::uint64_t i, std::span<std::byte> out) {
  std::memcpy(out.data(), &i, sizeof i);
  std::size_t const n = sizeof i + i % 200;
  for (std::size_t k = sizeof i; k < n; ++k) out[k] = static_cast<std::byte>(i + k);
  return n;
}

// The reader process: every message, in order, intact. Returns the exit status.
int ReadAll(std::string const& name) {
  // The ring may not exist yet: wait for the writer to create it, then read
  // from the oldest message in it (the ring is large enough to hold all).
  cb::Reader reader(cb::Spec::Make(name, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 10s});
  std::array<std::byte, 256> buffer{};
  std::array<std::byte, 256> want{};
  std::uint64_t next = 0;
  while (next < kMessages) {
    int const n = circbuf_consumer_read(reader, buffer.data(), buffer.size());
    if (n == cb::kEmpty) {
      if (reader.Wait(10s) == cb::WaitResult::kTimeout) {
        std::fprintf(stderr, "reader: no message %llu within 10 s\n", static_cast<unsigned long long>(next));
        return 1;
      }
      continue;
    }
    if (n < 0) {
      std::fprintf(stderr, "reader: Read returned %d at message %llu\n", n, static_cast<unsigned long long>(next));
      return 1;
    }
    std::size_t const size = Fill(next, want);
    if (static_cast<std::size_t>(n) != size || std::memcmp(buffer.data(), want.data(), size) != 0) {
      std::fprintf(stderr, "reader: message %llu is wrong (%d bytes)\n", static_cast<unsigned long long>(next), n);
      return 1;
    }
    ++next;
  }
  if (reader.Lost() != 0) return 1;
  std::printf("reader: %llu messages intact, none lost\n", static_cast<unsigned long long>(reader.Delivered()));
  return 0;
}

}  // namespace

int main() {
  std::string const name = "/circbuf-consumer-" + std::to_string(getpid());
  pid_t const child = fork();  // fork first: the writer is created after (see Writer)
  if (child < 0) {
    std::perror("fork");
    return 1;
  }
  if (child == 0) {
    try {
      _exit(ReadAll(name));
    } catch (std::exception const& e) {
      std::fprintf(stderr, "reader: %s\n", e.what());
      _exit(1);
    }
  }

  int status = 0;
  try {
    // 1 MiB: room for all 1000 messages (about 120 KB), so the reader never
    // loses one, however late it attaches.
    cb::Writer writer(cb::Spec::Make(name, 1 << 20));
    std::array<std::byte, 256> message{};
    for (std::uint64_t i = 0; i < kMessages; ++i) {
      circbuf_consumer_write(writer, message.data(), Fill(i, message));
    }
    std::printf("writer: %llu messages written to %s\n", static_cast<unsigned long long>(writer.NextSequence()),
                name.c_str());
    // Keep the ring (and the writer) until the reader is done; the last
    // process to detach removes the ring.
    if (waitpid(child, &status, 0) != child) status = -1;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "writer: %s\n", e.what());
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return 1;
  }
  bool const ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  std::printf("%s\n", ok ? "circbuf round trip: OK" : "circbuf round trip: FAILED");
  return ok ? 0 : 1;
}
