// Recording speed (issue 18), in one process, judged against dd in the same
// run and place:
//   record/append/shm/1024     RecordingWriter::Append of 1 KiB messages to a file in /dev/shm
//   record/append/disk/1024    the same to a file in the working directory (the build tree's disk)
//   record/ring/shm/1024       the recorder's whole path per message: Writer::Write into a ring,
//                              Reader::Read out of it, Append to /dev/shm (one thread: the work, not
//                              the cross-core transfer)
//   dd/shm, dd/disk            /bin/dd if=/dev/zero bs=1M writing the same number of bytes to the
//                              same place (conv=fsync off, like the recorder: page cache)
// Counter bytes_per_second (wall time: dd runs in another process); the target is Append >= 0.8 x
// dd at the same place. Each round writes
// kBytes; files are removed afterwards.
//   replay/ring/64             the ring writer's own rate: Writer::Write of 64-byte messages from memory
//   replay/file/64             what `circbuf replay --speed max` does per message: RecordingReader::Next
//                              of a recording in /dev/shm, the sequence check, Writer::Write
// Counter items_per_second; the target is replay/file >= 0.5 x replay/ring.
// Flags: Google Benchmark's own (--round_trips and --seconds are accepted and ignored: ctest's
// smoke run).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "support/harness.hpp"
#include "support/transports.hpp"

import circbuf;

extern char** environ;

namespace cb = circbuf::CircularBuffer;
namespace cbb = circbuf::bench;
namespace rec = circbuf::Recording;

namespace {

constexpr std::size_t kMessage = 1024;
constexpr std::uint64_t kBytes = std::uint64_t{128} << 20;  // per round
constexpr std::uint64_t kMessages = kBytes / kMessage;

std::string PathIn(bool shm) {
  return (shm ? std::string("/dev/shm/") : std::string("./")) + "cbt-bench-rec-" + std::to_string(::getpid());
}

void Report(benchmark::State& state, std::uint64_t bytes) {
  state.counters["bytes_per_second"] = benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kIsRate);
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}

void Append(benchmark::State& state, bool shm) {
  std::string const path = PathIn(shm);
  std::vector<std::byte> message(kMessage, std::byte{7});
  std::uint64_t bytes = 0;
  for (auto _ : state) {
    std::remove(path.c_str());
    rec::RecordingWriter w(path);
    for (std::uint64_t i = 0; i < kMessages; ++i) w.Append(i, i, message);
    w.Close();
    bytes += kBytes;
  }
  std::remove(path.c_str());
  Report(state, bytes);
}

void RingThenAppend(benchmark::State& state) {
  std::string const path = PathIn(true);
  auto const spec = cb::Spec::Make(cbb::UniqueName("rec"), 1 << 20);
  cb::Writer writer(spec);
  cb::Reader reader(cb::Spec::Make(spec.Name(), 0), {.start = cb::StartAt::kNext});
  std::vector<std::byte> message(kMessage, std::byte{7});
  std::vector<std::byte> buffer(cb::kMaxMessageSize);
  std::uint64_t bytes = 0;
  for (auto _ : state) {
    std::remove(path.c_str());
    rec::RecordingWriter w(path);
    for (std::uint64_t i = 0; i < kMessages; ++i) {
      writer.Write(message);
      std::uint64_t const sequence = reader.NextSequence();
      int const n = reader.Read(buffer);
      if (n != static_cast<int>(kMessage)) state.SkipWithError("the ring did not deliver the message");
      w.Append(sequence, i, std::span(buffer.data(), kMessage));
    }
    w.Close();
    bytes += kBytes;
  }
  std::remove(path.c_str());
  Report(state, bytes);
}

void Dd(benchmark::State& state, bool shm) {
  std::string const path = PathIn(shm) + "-dd";
  std::string const of = "of=" + path;
  std::string const count = "count=" + std::to_string(kBytes >> 20);
  std::uint64_t bytes = 0;
  for (auto _ : state) {
    std::remove(path.c_str());
    std::vector<std::string> args{"dd", "if=/dev/zero", of, "bs=1M", count, "status=none"};
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    if (::posix_spawn(&pid, "/bin/dd", nullptr, nullptr, argv.data(), environ) != 0) {
      state.SkipWithError("cannot run /bin/dd");
      break;
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) state.SkipWithError("dd failed");
    bytes += kBytes;
  }
  std::remove(path.c_str());
  Report(state, bytes);
}

constexpr std::size_t kSmall = 64;
constexpr std::uint64_t kReplayMessages = std::uint64_t{1} << 22;  // per round

void ReplayRing(benchmark::State& state) {
  cb::Writer writer(cb::Spec::Make(cbb::UniqueName("replay"), 1 << 20));
  std::vector<std::byte> message(kSmall, std::byte{7});
  std::uint64_t messages = 0;
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < kReplayMessages; ++i) writer.Write(message);
    messages += kReplayMessages;
  }
  state.counters["items_per_second"] = benchmark::Counter(static_cast<double>(messages), benchmark::Counter::kIsRate);
}

void ReplayFile(benchmark::State& state) {
  std::string const path = PathIn(true) + "-replay";
  {
    std::remove(path.c_str());
    rec::RecordingWriter w(path);
    std::vector<std::byte> message(kSmall, std::byte{7});
    for (std::uint64_t i = 0; i < kReplayMessages; ++i) w.Append(i, i, message);
    w.Close();
  }
  cb::Writer writer(cb::Spec::Make(cbb::UniqueName("replay"), 1 << 20));
  std::uint64_t messages = 0;
  for (auto _ : state) {
    rec::RecordingReader reader(path);
    rec::Entry e;
    std::uint64_t const delta = writer.NextSequence();  // as replay's shifted numbers
    while (reader.Next(e)) {
      std::uint64_t const number = e.sequence + delta;
      if (e.type != rec::EntryType::kMessage || number < writer.NextSequence()) continue;
      if (number > writer.NextSequence()) writer.Skip(number - writer.NextSequence());
      writer.Write(e.payload);
      ++messages;
    }
  }
  std::remove(path.c_str());
  state.counters["items_per_second"] = benchmark::Counter(static_cast<double>(messages), benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
  cbb::TakeFlag(argc, argv, "--round_trips=", [](char const*) {});
  cbb::TakeFlag(argc, argv, "--seconds=", [](char const*) {});
  benchmark::RegisterBenchmark("dd/shm", [](benchmark::State& s) { Dd(s, true); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("record/append/shm/1024", [](benchmark::State& s) { Append(s, true); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("record/ring/shm/1024", RingThenAppend)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("dd/disk", [](benchmark::State& s) { Dd(s, false); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("record/append/disk/1024", [](benchmark::State& s) { Append(s, false); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("replay/ring/64", ReplayRing)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("replay/file/64", ReplayFile)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
