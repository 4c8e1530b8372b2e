// Peer: Boost.Interprocess message_queue (header-only, Debian libboost-dev
// 1.74). Queue A carries main -> echo, queue B echo -> main.
// Semantics, unlike circbuf: consume (each message goes to exactly one
// receiver, no broadcast) with back-pressure (send blocks while the queue is
// full, so nothing is lost and a slow receiver slows the sender down). The
// queue is a fixed array of max_num_msg slots of max_msg_size bytes in one
// shared-memory segment, guarded by one process-shared mutex; send and
// receive each take the mutex, and the blocking calls wait on process-shared
// condition variables (futex). Two flavours:
//   boost-mq-spin  try_receive polled in a loop (no sleep in the receiver)
//   boost-mq       receive, which sleeps on the condition variable
// Both sides copy: send copies the message in, receive copies it out.
#pragma once

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <boost/interprocess/ipc/message_queue.hpp>

#include "support/harness.hpp"

namespace circbuf::bench {

namespace bip = boost::interprocess;

class BoostMqEndpoint final : public Endpoint {
 public:
  BoostMqEndpoint(std::string const& out, std::string const& in, bool spin)
      : out_(bip::open_only, out.c_str()), in_(bip::open_only, in.c_str()), spin_(spin) {}
  void Send(std::span<std::byte const> m) override { out_.send(m.data(), m.size(), 0); }  // blocks when full
  std::size_t Receive(std::span<std::byte> out) override {
    bip::message_queue::size_type size = 0;
    unsigned priority = 0;
    if (spin_) {
      return in_.try_receive(out.data(), out.size(), size, priority) ? static_cast<std::size_t>(size) : 0;
    }
    in_.receive(out.data(), out.size(), size, priority);
    return static_cast<std::size_t>(size);
  }

 private:
  bip::message_queue out_;
  bip::message_queue in_;
  bool spin_;
};

// Queues of a benchmark process that was killed (names carry its pid).
inline void SweepStaleBoostQueues() {
  DIR* const dir = ::opendir("/dev/shm");
  if (dir == nullptr) return;
  while (dirent const* entry = ::readdir(dir)) {
    std::string_view const name = entry->d_name;
    if (!name.starts_with("cbb-bmq-")) continue;
    long const pid = std::strtol(entry->d_name + 8, nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      bip::message_queue::remove(std::string(name).c_str());
    }
  }
  ::closedir(dir);
}

// Queues of `max_messages` slots of `payload` bytes (at least 8: the stop
// message is 1 byte), created here in the measuring process before fork and
// opened by each side. Returns an empty transport if they cannot be created.
inline Transport BoostMqTransport(bool spin, std::size_t payload, std::size_t max_messages) {
  static int counter = 0;
  if (counter == 0) SweepStaleBoostQueues();
  std::string const stem = "cbb-bmq-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  auto a = std::make_shared<std::string>(stem + "-a");
  auto b = std::make_shared<std::string>(stem + "-b");
  try {
    for (auto const& n : {*a, *b}) {
      bip::message_queue::remove(n.c_str());
      bip::message_queue const q(bip::create_only, n.c_str(), max_messages, std::max<std::size_t>(payload, 8));
    }
  } catch (std::exception const& e) {
    std::fprintf(stderr, "boost message_queue %s: %s\n", stem.c_str(), e.what());
    bip::message_queue::remove(a->c_str());
    bip::message_queue::remove(b->c_str());
    return {"", nullptr, nullptr};
  }
  return {spin ? "boost-mq-spin" : "boost-mq", [a, b, spin] { return std::make_unique<BoostMqEndpoint>(*a, *b, spin); },
          [a, b, spin] { return std::make_unique<BoostMqEndpoint>(*b, *a, spin); },
          [a, b] {
            bip::message_queue::remove(a->c_str());
            bip::message_queue::remove(b->c_str());
          }};
}

// Round trips need only a few slots (one message is in flight); flat-out
// throughput wants a deep queue so that the sender rarely blocks. One transport
// serves both benchmarks, so take the deep one: 1024 slots, 256 at 65535 bytes
// (16 MiB per queue).
inline std::size_t BoostMqDepth(std::size_t payload) { return payload >= 65535 ? 256 : 1024; }

}  // namespace circbuf::bench
