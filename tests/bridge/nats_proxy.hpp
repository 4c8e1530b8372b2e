// A TCP proxy between a NATS client and a real nats-server that loses
// chosen JetStream deliveries: the frames (HMSG/MSG) that carry a consumer's
// delivery of stream sequences [drop_from, drop_to] on their way to the
// client are dropped whole, and everything else passes byte for byte. This
// is what a client sees when deliveries to an AckNone consumer are lost in
// flight (a slow-consumer disconnect, a pull request that expired with
// messages on the way): the consumer has moved past them, the stream still
// holds them. Plain C++ and POSIX (included before `import circbuf;`).
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace circbuf::test {

class LossyNatsProxy {
 public:
  LossyNatsProxy(int upstream_port, std::uint64_t drop_from, std::uint64_t drop_to)
      : upstream_port_(upstream_port),
        drop_from_(drop_from),
        drop_to_(drop_to),
        listen_fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    int const one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 8) != 0) {
      std::abort();
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Accept(); });
  }
  ~LossyNatsProxy() {
    stop_.store(true);
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    for (std::thread& t : connections_) t.join();
    ::close(listen_fd_);
  }
  LossyNatsProxy(LossyNatsProxy const&) = delete;
  LossyNatsProxy& operator=(LossyNatsProxy const&) = delete;

  [[nodiscard]] std::string Url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  // Deliveries dropped so far.
  [[nodiscard]] std::uint64_t Dropped() const { return dropped_.load(); }

 private:
  void Accept() {
    for (;;) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (stop_.load()) return;
      if (::poll(&p, 1, 100) != 1) continue;
      int const client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        if (stop_.load()) return;
        continue;
      }
      int const server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<std::uint16_t>(upstream_port_));
      if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      connections_.emplace_back([this, client, server] { Relay(client, server); });
    }
  }

  static bool SendAll(int fd, char const* p, std::size_t n) {
    while (n > 0) {
      ssize_t const w = ::send(fd, p, n, MSG_NOSIGNAL);
      if (w <= 0) return false;
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }

  static std::vector<std::string_view> Tokens(std::string_view line) {
    std::vector<std::string_view> out;
    for (std::size_t at = 0; at < line.size();) {
      std::size_t const end = std::min(line.find(' ', at), line.size());
      if (end > at) out.push_back(line.substr(at, end - at));
      at = end + 1;
    }
    return out;
  }

  // The stream sequence a JetStream delivery's reply subject names
  // ($JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>,
  // or the longer form with domain and account hash first); 0 if none.
  static std::uint64_t StreamSequence(std::string_view reply) {
    if (!reply.starts_with("$JS.ACK.")) return 0;
    std::vector<std::string_view> parts;
    for (std::size_t at = 0; at <= reply.size();) {
      std::size_t const end = std::min(reply.find('.', at), reply.size());
      parts.push_back(reply.substr(at, end - at));
      at = end + 1;
    }
    std::size_t const index = parts.size() == 9 ? 5 : parts.size() >= 12 ? 7 : 0;
    if (index == 0) return 0;
    return std::strtoull(std::string(parts[index]).c_str(), nullptr, 10);
  }

  // Frames from the server in `buffer`: complete ones are forwarded (or
  // dropped) and removed; false if the client is gone.
  bool Forward(std::string& buffer, int client) {
    for (;;) {
      std::size_t const eol = buffer.find("\r\n");
      if (eol == std::string::npos) return true;
      std::string_view const line(buffer.data(), eol);
      std::size_t frame = eol + 2;
      bool drop = false;
      if (line.starts_with("HMSG ") || line.starts_with("MSG ")) {
        std::vector<std::string_view> const t = Tokens(line);
        bool const headers = line.starts_with("HMSG ");
        std::size_t const with_reply = headers ? 6 : 5;
        if (t.size() < with_reply - 1) return false;  // not NATS: give up on this connection
        frame += std::strtoull(std::string(t.back()).c_str(), nullptr, 10) + 2;
        if (t.size() == with_reply) {
          std::uint64_t const seq = StreamSequence(t[3]);
          drop = seq >= drop_from_ && seq <= drop_to_ && seq != 0;
        }
      }
      if (buffer.size() < frame) return true;  // the rest of the frame has not come yet
      if (drop) {
        dropped_.fetch_add(1);
      } else if (!SendAll(client, buffer.data(), frame)) {
        return false;
      }
      buffer.erase(0, frame);
    }
  }

  void Relay(int client, int server) {
    std::string from_server;
    char chunk[65536];
    while (!stop_.load()) {
      pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(p, 2, 100) <= 0) continue;
      if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        ssize_t const n = ::recv(client, chunk, sizeof chunk, 0);
        if (n <= 0 || !SendAll(server, chunk, static_cast<std::size_t>(n))) break;
      }
      if ((p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        ssize_t const n = ::recv(server, chunk, sizeof chunk, 0);
        if (n <= 0) break;
        from_server.append(chunk, static_cast<std::size_t>(n));
        if (!Forward(from_server, client)) break;
      }
    }
    ::close(client);
    ::close(server);
  }

  int upstream_port_;
  std::uint64_t drop_from_;
  std::uint64_t drop_to_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> dropped_{0};
  std::thread thread_;
  std::vector<std::thread> connections_;
};

}  // namespace circbuf::test
