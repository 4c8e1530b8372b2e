// The cost per message of each way to read and write (issue 15), in one
// thread, so that only the call's own work is measured (no cache line crosses
// cores): a 4 MiB ring is filled with 64-byte messages (or 64-byte Quote
// values), then drained.
//   api/read/SIZE         a loop of Reader::Read
//   api/poll/SIZE         Reader::Poll(handler, 256) until empty
//   api/typed-read/SIZE   TypedReader<Quote>::Read until empty
//   api/typed-poll/SIZE   TypedReader<Quote>::Poll
//   api/write/SIZE        Writer::Write
//   api/typed-write/SIZE  TypedWriter<Quote>::Write
//   api/emplace/SIZE      TypedWriter<Quote>::Emplace
// Counter ns_per_msg; judge them as ratios within one run (read vs poll vs
// typed-read; write vs typed-write vs emplace). Flags: Google Benchmark's own
// (--round_trips and --seconds are accepted and ignored: ctest's smoke run).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "support/harness.hpp"
#include "support/transports.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
namespace cbb = circbuf::bench;

namespace {

constexpr std::uint64_t kCapacity = 4 << 20;
constexpr std::uint64_t kMessages = 40000;  // 40000 x 72-byte records: 2.9 MB, no lap
constexpr std::uint64_t kQuoteId = 0x51554f5445;

struct Quote {
  std::uint64_t sequence;
  double bid;
  double ask;
  double bid_size;
  double ask_size;
  std::uint32_t instrument;
  std::uint32_t flags;
  std::uint64_t exchange_ns;
  std::uint64_t receive_ns;
};
static_assert(sizeof(Quote) == 64);

struct Sum {
  std::uint64_t* bytes;
  void operator()(std::span<std::byte const> m) const { *bytes += m.size(); }
};

struct SumQuotes {
  std::uint64_t* total;
  void operator()(Quote const& q) const { *total += q.sequence; }
};

void Report(benchmark::State& state, std::uint64_t messages) {
  state.counters["ns_per_msg"] =
      benchmark::Counter(static_cast<double>(messages), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetItemsProcessed(static_cast<std::int64_t>(messages));
}

void Fill(cb::Writer& w) {
  std::vector<std::byte> msg(sizeof(Quote), std::byte{1});
  for (std::uint64_t i = 0; i < kMessages; ++i) w.Write(msg);
}

template <class ReaderType>
ReaderType MakeReader(cb::Spec const& spec);
template <>
cb::Reader MakeReader<cb::Reader>(cb::Spec const& spec) {
  return cb::Reader(spec, {.start = cb::StartAt::kNext});
}
template <>
cb::TypedReader<Quote> MakeReader<cb::TypedReader<Quote>>(cb::Spec const& spec) {
  return {spec, kQuoteId, {.start = cb::StartAt::kNext}};
}

// Fills the ring with kMessages, then times `drain(reader)` emptying it, for
// as many rounds as Google Benchmark asks (the reader attaches once).
template <class ReaderType, class Drain>
void RunDrain(benchmark::State& state, Drain drain) {
  auto const spec = cb::Spec::Make(cbb::UniqueName("api"), kCapacity);
  cb::TypedWriter<Quote> w(spec, kQuoteId);
  ReaderType reader = MakeReader<ReaderType>(cb::Spec::Make(spec.Name(), 0));
  std::uint64_t messages = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Fill(w.Untyped());
    state.ResumeTiming();
    messages += drain(reader);
  }
  Report(state, messages);
}

void ReadLoop(benchmark::State& state) {
  std::vector<std::byte> buf(65536);
  RunDrain<cb::Reader>(state, [&](cb::Reader& reader) {
    std::uint64_t n = 0;
    while (reader.Read(buf) > 0) ++n;
    return n;
  });
}

void PollLoop(benchmark::State& state) {
  std::uint64_t bytes = 0;
  RunDrain<cb::Reader>(state, [&](cb::Reader& reader) {
    std::uint64_t n = 0;
    for (;;) {
      cb::PollResult const r = reader.Poll(Sum{&bytes}, 256);
      n += r.delivered;
      if (r.stopped != cb::Outcome::kMessage) break;
    }
    return n;
  });
  benchmark::DoNotOptimize(bytes);
}

void TypedReadLoop(benchmark::State& state) {
  Quote q{};
  RunDrain<cb::TypedReader<Quote>>(state, [&](cb::TypedReader<Quote>& reader) {
    std::uint64_t n = 0;
    while (reader.Read(q) == cb::Outcome::kMessage) ++n;
    return n;
  });
  benchmark::DoNotOptimize(q);
}

void TypedPollLoop(benchmark::State& state) {
  std::uint64_t total = 0;
  RunDrain<cb::TypedReader<Quote>>(state, [&](cb::TypedReader<Quote>& reader) {
    std::uint64_t n = 0;
    for (;;) {
      cb::PollResult const r = reader.Poll(SumQuotes{&total}, 256);
      n += r.delivered;
      if (r.stopped != cb::Outcome::kMessage) break;
    }
    return n;
  });
  benchmark::DoNotOptimize(total);
}

template <class WriteOne>
void RunWrites(benchmark::State& state, WriteOne write_one) {
  auto const spec = cb::Spec::Make(cbb::UniqueName("api"), kCapacity);
  cb::TypedWriter<Quote> w(spec, kQuoteId);
  std::uint64_t messages = 0;
  Quote q{};
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < kMessages; ++i) {
      q.sequence = i;
      write_one(w, q);
    }
    messages += kMessages;
  }
  Report(state, messages);
}

void WriteLoop(benchmark::State& state) {
  RunWrites(state, [](cb::TypedWriter<Quote>& w, Quote const& q) {
    w.Untyped().Write(std::span<std::byte const>(reinterpret_cast<std::byte const*>(&q), sizeof q));
  });
}
void TypedWriteLoop(benchmark::State& state) {
  RunWrites(state, [](cb::TypedWriter<Quote>& w, Quote const& q) { w.Write(q); });
}
void EmplaceLoop(benchmark::State& state) {
  RunWrites(state, [](cb::TypedWriter<Quote>& w, Quote const& q) { w.Emplace(q); });
}

}  // namespace

int main(int argc, char** argv) {
  cbb::TakeFlag(argc, argv, "--round_trips=", [](char const*) {});
  cbb::TakeFlag(argc, argv, "--seconds=", [](char const*) {});
  for (auto [name, fn] :
       {std::pair{"api/read/64", &ReadLoop}, std::pair{"api/poll/64", &PollLoop},
        std::pair{"api/typed-read/64", &TypedReadLoop}, std::pair{"api/typed-poll/64", &TypedPollLoop},
        std::pair{"api/write/64", &WriteLoop}, std::pair{"api/typed-write/64", &TypedWriteLoop},
        std::pair{"api/emplace/64", &EmplaceLoop}}) {
    benchmark::RegisterBenchmark(name, fn)->Unit(benchmark::kMicrosecond);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
