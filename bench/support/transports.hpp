// Transports measured by the suite: circbuf and the kernel's own IPC. Each is
// a pair of Endpoint factories (see harness.hpp). Kernel transports come in
// two flavours: blocking (the usual way to use them) and busy-polled
// (O_NONBLOCK and spin, the fairest comparison with a spinning ring reader).
#pragma once

#include <fcntl.h>
#include <mqueue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "support/harness.hpp"

import circbuf;

namespace circbuf::bench {

namespace cb = circbuf::CircularBuffer;

inline std::string UniqueName(std::string_view what) {
  static int counter = 0;
  return "/cbb-" + std::string(what) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// Options of every circbuf writer in the suite; --huge-pages= sets huge_pages.
inline cb::WriterOptions g_writer_options{};

// --huge-pages=no|prefer|require (default no: as /dev/shm is mounted).
inline void ParseHugePages(int& argc, char** argv) {
  TakeFlag(argc, argv, "--huge-pages=", [](char const* v) {
    std::string_view const s(v);
    g_writer_options.huge_pages = s == "prefer"    ? HugePages::kPrefer
                                  : s == "require" ? HugePages::kRequire
                                                   : HugePages::kAsMounted;
  });
}

// ---- circbuf: ring A carries main -> echo, ring B echo -> main -------------------

class RingEndpoint final : public Endpoint {
 public:
  RingEndpoint(cb::Spec const& out, cb::Spec const& in)
      : writer_(out, g_writer_options),
        reader_(cb::Spec::Make(in.Name(), 0),
                {.start = cb::StartAt::kNext, .wait_for_buffer = std::chrono::seconds(10)}) {}
  void Send(std::span<std::byte const> m) override { writer_.Write(m); }
  std::size_t Receive(std::span<std::byte> out) override {
    int const n = reader_.Read(out);
    return n > 0 ? static_cast<std::size_t>(n) : 0;  // kLapped: counted in Lost(), next Read resumes
  }
  [[nodiscard]] std::uint64_t Lost() const override { return reader_.Lost(); }

 private:
  cb::Writer writer_;
  cb::Reader reader_;
};

// One-directional ring for throughput runs: the main process only writes.
class RingSender final : public Endpoint {
 public:
  explicit RingSender(cb::Spec const& spec) : writer_(spec, g_writer_options) {}
  void Send(std::span<std::byte const> m) override { writer_.Write(m); }
  std::size_t Receive(std::span<std::byte> /*out*/) override { return 0; }

 private:
  cb::Writer writer_;
};
class RingReceiver final : public Endpoint {
 public:
  explicit RingReceiver(cb::Spec const& spec)
      : reader_(cb::Spec::Make(spec.Name(), 0),
                {.start = cb::StartAt::kOldest, .wait_for_buffer = std::chrono::seconds(10)}) {}
  void Send(std::span<std::byte const> /*message*/) override {}
  std::size_t Receive(std::span<std::byte> out) override {
    int const n = reader_.Read(out);
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  [[nodiscard]] std::uint64_t Lost() const override { return reader_.Lost(); }

 private:
  cb::Reader reader_;
};

inline Transport RingRoundTrip(std::uint64_t capacity = 1 << 20) {
  auto a = std::make_shared<cb::Spec>(cb::Spec::Make(UniqueName("a"), capacity));
  auto b = std::make_shared<cb::Spec>(cb::Spec::Make(UniqueName("b"), capacity));
  return {"circbuf", [a, b] { return std::make_unique<RingEndpoint>(*a, *b); },
          [a, b] { return std::make_unique<RingEndpoint>(*b, *a); },
          [a, b] {
            for (auto const* s : {a.get(), b.get()}) {
              (void)circbuf::CircularBuffer::Remove(s->Name(), /*force=*/true);
            }
          }};
}

inline Transport RingOneWay(std::uint64_t capacity) {
  auto a = std::make_shared<cb::Spec>(cb::Spec::Make(UniqueName("t"), capacity));
  // The receiver attaches first (kOldest) so that it sees the stream from the start.
  return {"circbuf", [a] { return std::make_unique<RingSender>(*a); },
          [a] { return std::make_unique<RingReceiver>(*a); },
          [a] { (void)circbuf::CircularBuffer::Remove(a->Name(), /*force=*/true); }};
}

// ---- Stream fds (pipe, Unix stream socket): 4-byte length prefix framing ------------

class StreamEndpoint final : public Endpoint {
 public:
  StreamEndpoint(int out, int in, bool spin) : out_(out), in_(in), spin_(spin) {
    if (spin_) ::fcntl(in_, F_SETFL, ::fcntl(in_, F_GETFL) | O_NONBLOCK);
  }
  void Send(std::span<std::byte const> m) override {
    auto n = static_cast<std::uint32_t>(m.size());  // not const: iovec's base is a void*
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): writev only reads; iovec has no const variant
    iovec iov[2] = {{&n, 4}, {const_cast<std::byte*>(m.data()), m.size()}};
    iovec* next = iov;
    int count = 2;
    while (count > 0) {
      ssize_t const w = ::writev(out_, next, count);
      if (w < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        std::abort();
      }
      auto done = static_cast<std::size_t>(w);
      while (count > 0 && done >= next->iov_len) {  // skip what was written
        done -= next->iov_len;
        ++next;
        --count;
      }
      if (count > 0) {
        next->iov_base = static_cast<char*>(next->iov_base) + done;
        next->iov_len -= done;
      }
    }
  }
  std::size_t Receive(std::span<std::byte> out) override {
    std::uint32_t n = 0;
    if (!ReadExactly(&n, 4, spin_)) return 0;  // nothing yet (spin mode)
    ReadExactly(out.data(), n, false);         // the rest of a started message
    return n;
  }

 private:
  bool ReadExactly(void* p, std::size_t n, bool may_be_empty) const {
    auto* c = static_cast<char*>(p);
    std::size_t got = 0;
    while (got < n) {
      ssize_t const r = ::read(in_, c + got, n - got);
      if (r > 0) {
        got += static_cast<std::size_t>(r);
      } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (got == 0 && may_be_empty) return false;
      } else {
        std::abort();
      }
    }
    return true;
  }
  int out_, in_;
  bool spin_;
};

inline Transport PipeTransport(bool spin) {
  auto fds = std::make_shared<std::array<int, 4>>();
  if (::pipe(fds->data()) != 0 || ::pipe(fds->data() + 2) != 0) std::abort();
  for (int& fd : *fds) ::fcntl(fd, F_SETPIPE_SZ, 1 << 20);
  return {spin ? "pipe (busy-poll)" : "pipe",
          [fds, spin] { return std::make_unique<StreamEndpoint>((*fds)[1], (*fds)[2], spin); },
          [fds, spin] { return std::make_unique<StreamEndpoint>((*fds)[3], (*fds)[0], spin); },
          [fds] {
            for (int fd : *fds) ::close(fd);
          }};
}

inline Transport UnixSocketTransport(bool spin) {
  auto fds = std::make_shared<std::array<int, 2>>();
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds->data()) != 0) std::abort();
  for (int fd : *fds) {
    int size = 4 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  return {spin ? "unix socket (busy-poll)" : "unix socket",
          [fds, spin] { return std::make_unique<StreamEndpoint>((*fds)[0], (*fds)[0], spin); },
          [fds, spin] { return std::make_unique<StreamEndpoint>((*fds)[1], (*fds)[1], spin); },
          [fds] {
            for (int fd : *fds) ::close(fd);
          }};
}

// ---- POSIX message queue (consume semantics, message-oriented) ----------------------

class MqEndpoint final : public Endpoint {
 public:
  MqEndpoint(std::string const& out, std::string const& in, bool spin)
      : out_(::mq_open(out.c_str(), O_WRONLY)), in_(::mq_open(in.c_str(), O_RDONLY | (spin ? O_NONBLOCK : 0))) {
    if (out_ == static_cast<mqd_t>(-1) || in_ == static_cast<mqd_t>(-1)) std::abort();
  }
  ~MqEndpoint() override {
    ::mq_close(out_);
    ::mq_close(in_);
  }
  MqEndpoint(MqEndpoint const&) = delete;
  MqEndpoint& operator=(MqEndpoint const&) = delete;
  void Send(std::span<std::byte const> m) override {
    while (::mq_send(out_, reinterpret_cast<char const*>(m.data()), m.size(), 0) != 0) {
      if (errno != EINTR && errno != EAGAIN) std::abort();
    }
  }
  std::size_t Receive(std::span<std::byte> out) override {
    ssize_t const n = ::mq_receive(in_, reinterpret_cast<char*>(out.data()), out.size(), nullptr);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EAGAIN || errno == EINTR) return 0;
    std::abort();
  }

 private:
  mqd_t out_, in_;
};

// Message queues are limited by /proc/sys/fs/mqueue (msg_max 10, msgsize_max
// 8192 by default for unprivileged users; root may go higher): returns an
// empty name if the queue cannot hold `payload`-byte messages.
inline Transport MqTransport(bool spin, std::size_t payload) {
  auto a = std::make_shared<std::string>(UniqueName("mqa"));
  auto b = std::make_shared<std::string>(UniqueName("mqb"));
  mq_attr attr{};
  attr.mq_maxmsg = 10;
  attr.mq_msgsize = static_cast<long>(std::max<std::size_t>(payload, 64));
  for (auto const& n : {*a, *b}) {
    mqd_t const q = ::mq_open(n.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
    if (q == static_cast<mqd_t>(-1)) return {"", nullptr, nullptr};
    ::mq_close(q);
  }
  return {spin ? "posix mq (busy-poll)" : "posix mq",
          [a, b, spin] { return std::make_unique<MqEndpoint>(*a, *b, spin); },
          [a, b, spin] { return std::make_unique<MqEndpoint>(*b, *a, spin); },
          [a, b] {
            ::mq_unlink(a->c_str());
            ::mq_unlink(b->c_str());
          }};
}

}  // namespace circbuf::bench
