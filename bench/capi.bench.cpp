// The cost of the C ABI (libcircbuf.so.0, capi/circbuf.h) per message,
// against the C++ API it wraps, in one thread (no cache line crosses cores,
// so only the call's own work is measured): a ring is filled, then drained.
//   capi/cpp-write/SIZE   Writer::Write                 capi/c-write/SIZE   circbuf_write
//   capi/cpp-read/SIZE    a loop of Reader::Read        capi/c-read/SIZE    a loop of circbuf_read
//   capi/c-poll/SIZE      circbuf_poll(handler, 256) until empty
// Counter ns_per_msg; judge c-* against cpp-* of the same size and run (the
// ratio is the ABI's overhead: one call through the PLT, argument checks).
// Flags: Google Benchmark's own (--round_trips and --seconds are accepted
// and ignored: ctest's smoke run).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "circbuf.h"
#include "support/harness.hpp"
#include "support/transports.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
namespace cbb = circbuf::bench;

namespace {

constexpr std::uint64_t kCapacity = 32 << 20;

// Messages per round: as many as fill 3/4 of the ring, at most 40000.
std::uint64_t Messages(std::size_t size) {
  std::uint64_t const fit = kCapacity * 3 / 4 / cb::RecordBytes(size);
  return fit < 40000 ? fit : 40000;
}

void Report(benchmark::State& state, std::uint64_t messages) {
  state.counters["ns_per_msg"] =
      benchmark::Counter(static_cast<double>(messages), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetItemsProcessed(static_cast<std::int64_t>(messages));
}

void CppWrite(benchmark::State& state) {
  auto const size = static_cast<std::size_t>(state.range(0));
  cb::Writer w(cb::Spec::Make(cbb::UniqueName("capi"), kCapacity));
  std::vector<std::byte> msg(size, std::byte{1});
  std::uint64_t const n = Messages(size);
  std::uint64_t messages = 0;
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < n; ++i) w.Write(msg);
    messages += n;
  }
  Report(state, messages);
}

void CWrite(benchmark::State& state) {
  auto const size = static_cast<std::size_t>(state.range(0));
  circbuf_writer* w = nullptr;
  if (circbuf_writer_open(cbb::UniqueName("capi").c_str(), kCapacity, nullptr, &w) != 0) {
    state.SkipWithError(circbuf_last_error());
    return;
  }
  std::vector<std::byte> msg(size, std::byte{1});
  std::uint64_t const n = Messages(size);
  std::uint64_t messages = 0;
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < n; ++i) {
      if (circbuf_write(w, msg.data(), size) != 0) state.SkipWithError(circbuf_last_error());
    }
    messages += n;
  }
  circbuf_writer_close(w);
  Report(state, messages);
}

// Fills the ring (C++ writer) before each round, untimed; `drain` empties it.
template <class Drain>
void RunDrain(benchmark::State& state, Drain drain) {
  auto const size = static_cast<std::size_t>(state.range(0));
  auto const spec = cb::Spec::Make(cbb::UniqueName("capi"), kCapacity);
  cb::Writer w(spec);
  std::vector<std::byte> msg(size, std::byte{1});
  std::uint64_t const n = Messages(size);
  std::uint64_t messages = 0;
  std::string const name(spec.Name());
  for (auto _ : state) {
    state.PauseTiming();
    for (std::uint64_t i = 0; i < n; ++i) w.Write(msg);
    state.ResumeTiming();
    messages += drain(name);
  }
  Report(state, messages);
}

void CppRead(benchmark::State& state) {
  std::vector<std::byte> buf(65536);
  std::optional<cb::Reader> reader;
  RunDrain(state, [&](std::string const& name) {
    if (!reader) reader.emplace(cb::Spec::Make(name, 0), cb::ReaderOptions{.start = cb::StartAt::kOldest});
    std::uint64_t got = 0;
    while (reader->Read(buf) > 0) ++got;
    return got;
  });
}

void CRead(benchmark::State& state) {
  std::vector<std::byte> buf(65536);
  circbuf_reader* reader = nullptr;
  RunDrain(state, [&](std::string const& name) -> std::uint64_t {
    if (reader == nullptr) {
      circbuf_reader_options options;
      circbuf_reader_options_init(&options);
      options.start = CIRCBUF_START_OLDEST;
      if (circbuf_reader_open(name.c_str(), 0, &options, &reader) != 0) return 0;
    }
    std::uint64_t got = 0;
    while (circbuf_read(reader, buf.data(), buf.size()) > 0) ++got;
    return got;
  });
  circbuf_reader_close(reader);
}

void Count(void const* /*data*/, std::size_t size, void* context) { *static_cast<std::uint64_t*>(context) += size; }

void CPoll(benchmark::State& state) {
  circbuf_reader* reader = nullptr;
  std::uint64_t bytes = 0;
  RunDrain(state, [&](std::string const& name) -> std::uint64_t {
    if (reader == nullptr) {
      circbuf_reader_options options;
      circbuf_reader_options_init(&options);
      options.start = CIRCBUF_START_OLDEST;
      if (circbuf_reader_open(name.c_str(), 0, &options, &reader) != 0) return 0;
    }
    std::uint64_t got = 0;
    for (;;) {
      int const n = circbuf_poll(reader, Count, &bytes, 256, nullptr);
      if (n <= 0) break;
      got += static_cast<std::uint64_t>(n);
    }
    return got;
  });
  benchmark::DoNotOptimize(bytes);
  circbuf_reader_close(reader);
}

}  // namespace

int main(int argc, char** argv) {
  cbb::TakeFlag(argc, argv, "--round_trips=", [](char const*) {});
  cbb::TakeFlag(argc, argv, "--seconds=", [](char const*) {});
  for (auto [name, fn] :
       {std::pair{"capi/cpp-write", &CppWrite}, std::pair{"capi/c-write", &CWrite},
        std::pair{"capi/cpp-read", &CppRead}, std::pair{"capi/c-read", &CRead}, std::pair{"capi/c-poll", &CPoll}}) {
    benchmark::RegisterBenchmark(name, fn)->Unit(benchmark::kMicrosecond)->Arg(8)->Arg(64)->Arg(1024)->Arg(65535);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
