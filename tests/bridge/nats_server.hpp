// Bridge test support: real nats-server processes (CIRCBUF_NATS_SERVER, set
// by CMake) with JetStream, on free loopback ports, each with its own store
// directory, stopped with the object; a three-node cluster; and a small
// libnats client to look at what a stream holds. No mock anywhere.
// Plain C++ (no module types): included before any import
// (docs/toolchain-notes.md, "Includes, imports and where spdlog may go", rule 1).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nats/nats.h>

#ifndef CIRCBUF_NATS_SERVER
#error "CIRCBUF_NATS_SERVER (the path of nats-server) must be defined by the build"
#endif

namespace circbuf::test {

// A loopback TCP port nobody listens on right now (the kernel's choice),
// never the same twice in one process (the kernel may hand a port it just
// gave out again once it is closed).
inline int FreePort() {
  static std::set<int> given;
  for (;;) {
    int const fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      std::abort();
    }
    ::close(fd);
    if (given.insert(ntohs(a.sin_port)).second) return ntohs(a.sin_port);
  }
}

inline bool Listening(int port) {
  int const fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  bool const ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A temporary directory, removed with the object.
struct TempDir {
  std::string path;
  TempDir() {
    char pattern[] = "/tmp/circbuf-bridge-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) std::abort();
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(TempDir const&) = delete;
  TempDir& operator=(TempDir const&) = delete;
};

// One `nats-server -js` process; SIGKILLed by the destructor if still running.
class NatsServer {
 public:
  struct Cluster {
    int port = 0;                 // this node's route port
    std::vector<int> route_ports;  // every node's (this one's too)
  };
  // `extra`: more command-line arguments (e.g. {"-c", CONFIG_FILE}).
  NatsServer(std::string name, std::string const& dir, std::optional<Cluster> cluster = std::nullopt,
             std::vector<std::string> const& extra = {})
      : name_(std::move(name)), port_(FreePort()), store_(dir + "/" + name_), log_(dir + "/" + name_ + ".log") {
    std::filesystem::create_directories(store_);
    args_ = {CIRCBUF_NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", std::to_string(port_), "-sd", store_, "-n", name_};
    args_.insert(args_.end(), extra.begin(), extra.end());
    if (cluster) {
      std::string routes;
      for (int p : cluster->route_ports)
        routes += (routes.empty() ? "" : ",") + std::string("nats://127.0.0.1:") + std::to_string(p);
      args_.insert(args_.end(), {"--cluster_name", "circbuf", "--cluster",
                                 "nats://127.0.0.1:" + std::to_string(cluster->port), "--routes", routes});
    }
    Start();
  }
  ~NatsServer() { Kill(); }
  NatsServer(NatsServer const&) = delete;
  NatsServer& operator=(NatsServer const&) = delete;

  void Start() {
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) std::abort();
    if (pid_ == 0) {
      int const fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
      }
      std::vector<char*> argv;
      argv.reserve(args_.size() + 1);
      // execv takes char* const[] for C compatibility and never writes through it.
      // NOLINTBEGIN(cppcoreguidelines-pro-type-const-cast)
      for (auto const& a : args_) argv.push_back(const_cast<char*>(a.c_str()));
      // NOLINTEND(cppcoreguidelines-pro-type-const-cast)
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (!Listening(port_) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  void Signal(int signal) const {
    if (pid_ > 0) ::kill(pid_, signal);
  }
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  [[nodiscard]] std::string Url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] int Port() const { return port_; }
  [[nodiscard]] std::string Log() const {
    std::ifstream in(log_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  std::string name_;
  int port_;
  std::string store_;
  std::string log_;
  std::vector<std::string> args_;
  pid_t pid_ = -1;
};

// Three nodes routed to each other on loopback ports.
struct NatsCluster {
  TempDir dir;
  std::vector<std::unique_ptr<NatsServer>> nodes;
  NatsCluster() {
    std::vector<int> routes = {FreePort(), FreePort(), FreePort()};
    for (int i = 0; i < 3; ++i) {
      nodes.push_back(std::make_unique<NatsServer>("node" + std::to_string(i), dir.path,
                                                   NatsServer::Cluster{routes[static_cast<std::size_t>(i)], routes}));
    }
  }
  [[nodiscard]] std::string Urls() const {
    std::string out;
    for (auto const& n : nodes) out += (out.empty() ? "" : ",") + n->Url();
    return out;
  }
  // Every node's log, for a failure message.
  [[nodiscard]] std::string Logs() const {
    std::string out;
    for (auto const& n : nodes) out += "---- " + n->Url() + "\n" + n->Log();
    return out;
  }
};

// What the test reads back from a stream: one entry per stored message.
struct StoredMessage {
  std::uint64_t stream_seq = 0;
  std::optional<std::uint64_t> seq;  // Circbuf-Seq
  std::optional<std::uint64_t> gap;  // Circbuf-Gap
  std::string payload;
};

inline std::optional<std::uint64_t> Header(natsMsg* m, char const* key) {
  char const* v = nullptr;
  if (natsMsgHeader_Get(m, key, &v) != NATS_OK || v == nullptr) return std::nullopt;
  return std::strtoull(v, nullptr, 10);
}

// A libnats connection of the test's own (to look at streams, and to wait
// for JetStream to be ready).
class NatsClient {
 public:
  // `creds`: a .creds file to authenticate with ("" for none).
  explicit NatsClient(std::string const& urls, std::string const& creds = "") {
    natsOptions* o = nullptr;
    natsOptions_Create(&o);
    if (!creds.empty()) natsOptions_SetUserCredentialsFromFiles(o, creds.c_str(), nullptr);
    std::vector<std::string> list;
    std::stringstream in(urls);
    for (std::string url; std::getline(in, url, ',');) list.push_back(url);
    std::vector<char const*> servers;
    servers.reserve(list.size());
    for (auto const& url : list) servers.push_back(url.c_str());
    natsOptions_SetServers(o, servers.data(), static_cast<int>(servers.size()));
    natsOptions_SetMaxReconnect(o, -1);
    natsOptions_SetReconnectWait(o, 100);
    natsOptions_SetTimeout(o, 2000);
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (natsConnection_Connect(&nc_, o) != NATS_OK && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    natsOptions_Destroy(o);
    if (nc_ != nullptr) natsConnection_JetStream(&js_, nc_, nullptr);
  }
  ~NatsClient() {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }
  NatsClient(NatsClient const&) = delete;
  NatsClient& operator=(NatsClient const&) = delete;
  [[nodiscard]] bool Ok() const { return js_ != nullptr; }

  // True once JetStream answers (a cluster has elected its meta leader).
  bool WaitForJetStream(std::chrono::seconds timeout = std::chrono::seconds(20)) {
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      jsAccountInfo* ai = nullptr;
      jsOptions o;
      jsOptions_Init(&o);
      o.Wait = 1000;
      natsStatus const s = js_GetAccountInfo(&ai, js_, &o, nullptr);
      jsAccountInfo_Destroy(ai);
      if (s == NATS_OK) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // Creates stream `stream` on `subject` (file storage, one replica), with
  // direct get allowed or not.
  bool AddStream(std::string const& stream, std::string const& subject, bool allow_direct) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    char const* subjects[] = {subject.c_str()};
    cfg.Name = stream.c_str();
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.AllowDirect = allow_direct;
    jsStreamInfo* si = nullptr;
    natsStatus const s = js_AddStream(&si, js_, &cfg, nullptr, nullptr);
    jsStreamInfo_Destroy(si);
    return s == NATS_OK;
  }

  // The stream's last sequence (0 if none or not asked).
  std::uint64_t LastSequence(std::string const& stream) {
    jsStreamInfo* si = nullptr;
    std::uint64_t last = 0;
    if (js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, nullptr) == NATS_OK) last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    return last;
  }

  // Messages in the stream (0 if it cannot be asked).
  std::uint64_t Count(std::string const& stream) {
    jsStreamInfo* si = nullptr;
    std::uint64_t n = 0;
    if (js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, nullptr) == NATS_OK) n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
  }

  // Waits until the stream's messages cover ring sequences up to `end`
  // (exclusive): its last message reaches there, or it holds `end` messages
  // (a publish sent again can be stored after its successors).
  bool WaitCovered(std::string const& stream, std::string const& subject, std::uint64_t end,
                   std::chrono::seconds timeout = std::chrono::seconds(20)) {
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      // An empty stream is not asked for its last message: nats-server 2.9.10
      // can crash on that request right after the stream was created (the
      // same reason as in tools/circbuf/bridge/out.cpp).
      if (LastSequence(stream) == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      natsMsg* m = nullptr;
      if (js_GetLastMsg(&m, js_, stream.c_str(), subject.c_str(), nullptr, nullptr) == NATS_OK) {
        auto const seq = Header(m, "Circbuf-Seq");
        auto const gap = Header(m, "Circbuf-Gap");
        natsMsg_Destroy(m);
        if (seq && *seq + (gap ? *gap : 1) >= end) return true;
      }
      if (Count(stream) >= end) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // Deletes the message at stream sequence `seq` (as retention limits would).
  bool Delete(std::string const& stream, std::uint64_t seq) {
    return js_DeleteMsg(js_, stream.c_str(), seq, nullptr, nullptr) == NATS_OK;
  }

  // Every message of the stream, in stream order.
  std::vector<StoredMessage> Messages(std::string const& stream) {
    std::vector<StoredMessage> out;
    std::uint64_t const last = LastSequence(stream);
    for (std::uint64_t s = 1; s <= last; ++s) {
      natsMsg* m = nullptr;
      if (js_GetMsg(&m, js_, stream.c_str(), s, nullptr, nullptr) != NATS_OK) continue;
      StoredMessage e;
      e.stream_seq = s;
      e.seq = Header(m, "Circbuf-Seq");
      e.gap = Header(m, "Circbuf-Gap");
      e.payload.assign(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m)));
      natsMsg_Destroy(m);
      out.push_back(std::move(e));
    }
    return out;
  }

 private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

}  // namespace circbuf::test
