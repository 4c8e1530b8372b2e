// circbuf-peer: the interop peer over the C++ API, with the command line of
// circbuf-peer-c (peer.c, which describes it) and the message pattern of
// pattern.h: a C writer with a C++ reader, and the reverse, in
// interop.test.cpp and the Python tests.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pattern.h"

import circbuf;

namespace cb = circbuf::CircularBuffer;

namespace {

int Write(std::string const& name, std::uint64_t capacity, std::uint64_t count, std::size_t max) {
  cb::Writer w(cb::Spec::Make(name, capacity));
  std::cout << "ready\n" << std::flush;
  std::string line;
  if (!std::getline(std::cin, line)) return 2;
  std::vector<unsigned char> message(cb::kMaxMessageSize);
  for (std::uint64_t i = 0; i < count; ++i) {
    std::size_t const size = PatternSize(i, max);
    PatternFill(i, message.data(), size);
    w.Write(std::as_bytes(std::span(message.data(), size)));
  }
  std::cout << "done\n" << std::flush;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}

int Read(std::string const& name, std::uint64_t count, cb::StartAt start, std::size_t writer_max) {
  cb::Reader r(cb::Spec::Make(name, 0), {.start = start});
  std::cout << "ready\n" << std::flush;
  std::vector<std::byte> buffer(cb::kMaxMessageSize);
  std::uint64_t bad = 0;
  while (r.Delivered() + r.Lost() < count) {
    int const n = r.Read(buffer);
    if (n > 0) {
      std::uint64_t const i = r.Delivered() - 1 + r.Lost();
      if (PatternMatches(i, writer_max, reinterpret_cast<unsigned char const*>(buffer.data()),
                         static_cast<std::size_t>(n)) == 0) {
        ++bad;
      }
    } else if (n == cb::kEmpty) {
      cb::WaitResult const why = r.Wait(std::chrono::seconds(5));
      if (why == cb::WaitResult::kTimeout || why == cb::WaitResult::kClosed || why == cb::WaitResult::kDead) break;
    } else if (n != cb::kLapped) {
      ++bad;
      if (n == cb::kCorrupt) break;
    }
  }
  std::cout << "delivered " << r.Delivered() << " lost " << r.Lost() << " bad " << bad << "\n" << std::flush;
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string_view> const args(argv, argv + argc);
    if (args.size() == 6 && args[1] == "write") {
      return Write(argv[2], std::strtoull(argv[3], nullptr, 10), std::strtoull(argv[4], nullptr, 10),
                   std::strtoull(argv[5], nullptr, 10));
    }
    if (args.size() >= 4 && args.size() <= 6 && args[1] == "read") {
      cb::StartAt start = cb::StartAt::kOldest;
      if (args.size() >= 5 && args[4] == "latest") start = cb::StartAt::kLatest;
      if (args.size() >= 5 && args[4] == "next") start = cb::StartAt::kNext;
      std::size_t const max = args.size() == 6 ? std::strtoull(argv[5], nullptr, 10) : 0;
      return Read(argv[2], std::strtoull(argv[3], nullptr, 10), start, max);
    }
  } catch (std::exception const& e) {
    std::cerr << "circbuf-peer: " << e.what() << "\n";
    return 2;
  }
  std::cerr << "usage: circbuf-peer write NAME CAPACITY COUNT MAXSIZE | read NAME COUNT [oldest|latest|next] "
               "[MAXSIZE]\n";
  return 2;
}
