// Test support: real child processes (fork), pipes to step them, unique names.
// Included before any import (docs/toolchain-notes.md, "Includes, imports and where spdlog may go", rule 1).
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

namespace circbuf::test {

// "/cbt-<tag>-<pid>-<n>": unique per process and call, so tests can run in parallel.
inline std::string UniqueName(std::string_view tag) {
  static std::atomic<int> counter{0};
  return "/cbt-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
}

inline bool ShmFileExists(std::string_view name) {
  struct stat st{};
  return ::stat(("/dev/shm/" + std::string(name.substr(1))).c_str(), &st) == 0;
}
inline bool SemFileExists(std::string_view name) {
  struct stat st{};
  return ::stat(("/dev/shm/sem." + std::string(name.substr(1))).c_str(), &st) == 0;
}

// A one-way pipe carrying single bytes: the simplest cross-process step signal.
class Pipe {
 public:
  Pipe() {
    if (::pipe(fds_) != 0) std::terminate();
  }
  ~Pipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  Pipe(Pipe const&) = delete;
  Pipe& operator=(Pipe const&) = delete;
  void Send(char c = '.') const {
    if (::write(fds_[1], &c, 1) != 1) std::terminate();
  }
  // The next byte, or -1 on timeout / end of file. Not [[nodiscard]]: a child
  // that only waits for its cue may ignore what the cue was (`go.Receive();`).
  // NOLINTNEXTLINE(modernize-use-nodiscard)
  int Receive(std::chrono::milliseconds timeout = std::chrono::seconds(30)) const {
    pollfd p{fds_[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return -1;
    char c = 0;
    return ::read(fds_[0], &c, 1) == 1 ? static_cast<unsigned char>(c) : -1;
  }

 private:
  int fds_[2]{-1, -1};
};

// A forked child running `body`; its return value is the exit code (an
// exception exits with 99). The child leaves with _exit, never through
// GoogleTest's machinery. The destructor SIGKILLs a child still running.
class Child {
 public:
  explicit Child(std::function<int()> const& body) : pid_(FlushAndFork()) {
    if (pid_ < 0) std::terminate();
    if (pid_ == 0) RunChild(body);
  }
  ~Child() {
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      Reap(true);
    }
  }
  Child(Child const&) = delete;
  Child& operator=(Child const&) = delete;

  [[nodiscard]] pid_t Pid() const { return pid_; }
  void Kill(int signal = SIGKILL) const { ::kill(pid_, signal); }

  // Exit code, 128 + signal if killed by one, or -1 if still running at the timeout.
  int Wait(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    while (!reaped_) {
      if (Reap(false)) break;
      if (std::chrono::steady_clock::now() >= deadline) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return status_;
  }

 private:
  // Buffered output is flushed first, so that the child does not print it again.
  static pid_t FlushAndFork() {
    std::fflush(nullptr);
    return ::fork();
  }
  [[noreturn]] static void RunChild(std::function<int()> const& body) {
    int code = 99;
    try {
      code = body();
    } catch (std::exception const& e) {
      std::fprintf(stderr, "child %d: exception: %s\n", ::getpid(), e.what());
    } catch (...) {
      std::fprintf(stderr, "child %d: exception of an unknown type\n", ::getpid());
    }
    std::fflush(nullptr);
    ::_exit(code);
  }

  bool Reap(bool block) {
    int status = 0;
    pid_t const r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (r != pid_) return false;
    reaped_ = true;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return true;
  }

  pid_t pid_;
  bool reaped_ = false;
  int status_ = -1;
};

}  // namespace circbuf::test
