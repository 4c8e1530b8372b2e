// CLI test support: the real `circbuf` binary (CIRCBUF_TOOL, set by CMake) in
// a real child process, with stdin, stdout and stderr on pipes, and timeouts.
// Included before any import (docs/toolchain-notes.md, "Includes, imports and where spdlog may go", rule 1).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#ifndef CIRCBUF_TOOL
#error "CIRCBUF_TOOL (the path of the circbuf binary) must be defined by the build"
#endif

namespace circbuf::test {

// A copy of the tool in a fresh 0755 directory, mode 0755, removed with the
// object: any user can run it wherever the build tree lives.
struct ToolCopyForOtherUsers {
  std::string dir;
  std::string path;
  ToolCopyForOtherUsers() {
    char pattern[] = "/tmp/circbuf-tool-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) std::abort();
    dir = pattern;
    ::chmod(dir.c_str(), 0755);
    path = dir + "/circbuf";
    std::filesystem::copy_file(CIRCBUF_TOOL, path);
    ::chmod(path.c_str(), 0755);
  }
  ~ToolCopyForOtherUsers() {
    ::unlink(path.c_str());
    ::rmdir(dir.c_str());
  }
  ToolCopyForOtherUsers(ToolCopyForOtherUsers const&) = delete;
  ToolCopyForOtherUsers& operator=(ToolCopyForOtherUsers const&) = delete;
};

struct Options {
  uid_t uid = 0;  // non-zero: setuid to it before exec (tests run as root)
  // The binary to run; empty: CIRCBUF_TOOL. Another user may not be able to
  // reach the build tree (a clone under a 0700 directory), so runs as `uid`
  // use a copy in a world-readable directory (see ToolCopyForOtherUsers).
  std::string binary;
};

// A running `circbuf ARGS...`. The destructor SIGKILLs it if still running.
class Tool {
 public:
  explicit Tool(std::vector<std::string> const& args, Options const& options = {}) {
    int in[2];
    int out[2];
    int err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) std::abort();
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) std::abort();
    if (pid_ == 0) {
      ::dup2(in[0], STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      if (options.uid != 0 && (::setgid(options.uid) != 0 || ::setuid(options.uid) != 0)) ::_exit(126);
      char const* binary = options.binary.empty() ? CIRCBUF_TOOL : options.binary.c_str();
      std::vector<char*> argv;
      // execv takes char* const[] for C compatibility and never writes through it.
      // NOLINTBEGIN(cppcoreguidelines-pro-type-const-cast)
      argv.push_back(const_cast<char*>(binary));
      for (auto const& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      // NOLINTEND(cppcoreguidelines-pro-type-const-cast)
      argv.push_back(nullptr);
      ::execv(binary, argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    in_fd_ = in[1];
    out_fd_ = out[0];
    err_fd_ = err[0];
    ::signal(SIGPIPE, SIG_IGN);  // a tool that exits early must not kill the test with our next write
  }
  ~Tool() {
    if (in_fd_ >= 0) ::close(in_fd_);
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    if (err_fd_ >= 0) ::close(err_fd_);
  }
  Tool(Tool const&) = delete;
  Tool& operator=(Tool const&) = delete;

  [[nodiscard]] pid_t Pid() const { return pid_; }
  void Signal(int signal) const { ::kill(pid_, signal); }

  // Queues bytes for stdin (written while pumping, so a full stdout never deadlocks).
  void Write(std::string_view data) { pending_ += data; }
  void CloseStdin() { close_stdin_ = true; }

  // Pumps until stdout contains `text`; false at the timeout or at end of output.
  bool WaitForOutput(std::string_view text, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    while (out_.find(text) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= deadline || !Pump(deadline)) return out_.find(text) != std::string::npos;
    }
    return true;
  }
  // Pumps until stdin is written out (and closed, after CloseStdin).
  bool Flush(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    while (!pending_.empty() || (close_stdin_ && in_fd_ >= 0)) {
      if (std::chrono::steady_clock::now() >= deadline || !Pump(deadline)) return false;
    }
    return true;
  }

  // Closes stdin and waits for the exit, reading stdout and stderr to their
  // end. Returns the exit code, 128 + the signal that killed it, or -1 at the
  // timeout (it is then killed).
  int Wait(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    close_stdin_ = true;
    while (out_fd_ >= 0 || err_fd_ >= 0 || in_fd_ >= 0) {
      if (std::chrono::steady_clock::now() >= deadline || !Pump(deadline)) break;
    }
    while (!reaped_) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        reaped_ = true;
        status_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return status_;
  }

  [[nodiscard]] std::string const& Out() const { return out_; }
  [[nodiscard]] std::string const& Err() const { return err_; }
  // True once stdout reached end of file: every process that held it has exited.
  [[nodiscard]] bool OutClosed() const { return out_fd_ < 0; }

 private:
  static void Drain(pollfd const& p, int& fd, std::string& sink) {
    if (p.revents == 0) return;
    char buf[65536];
    ssize_t const got = ::read(fd, buf, sizeof buf);
    if (got > 0) {
      sink.append(buf, static_cast<std::size_t>(got));
    } else if (got == 0 || errno != EINTR) {
      ::close(fd);
      fd = -1;
    }
  }

  // One poll round; false when nothing is left to wait for.
  bool Pump(std::chrono::steady_clock::time_point deadline) {
    if (close_stdin_ && pending_.empty() && in_fd_ >= 0) {
      ::close(in_fd_);
      in_fd_ = -1;
    }
    pollfd fds[3];
    int n = 0;
    int const i_out = out_fd_ >= 0 ? n++ : -1;
    if (i_out >= 0) fds[i_out] = {out_fd_, POLLIN, 0};
    int const i_err = err_fd_ >= 0 ? n++ : -1;
    if (i_err >= 0) fds[i_err] = {err_fd_, POLLIN, 0};
    int const i_in = in_fd_ >= 0 && !pending_.empty() ? n++ : -1;
    if (i_in >= 0) fds[i_in] = {in_fd_, POLLOUT, 0};
    if (n == 0) return false;
    auto const left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (::poll(fds, static_cast<nfds_t>(n), static_cast<int>(std::clamp<long long>(left, 1, 100))) <= 0) return true;
    if (i_out >= 0) Drain(fds[i_out], out_fd_, out_);
    if (i_err >= 0) Drain(fds[i_err], err_fd_, err_);
    if (i_in >= 0 && fds[i_in].revents != 0) {
      ssize_t const put = ::write(in_fd_, pending_.data(), std::min<std::size_t>(pending_.size(), 65536));
      if (put > 0) {
        pending_.erase(0, static_cast<std::size_t>(put));
      } else if (errno != EINTR && errno != EAGAIN) {
        pending_.clear();  // the tool closed its stdin
        ::close(in_fd_);
        in_fd_ = -1;
      }
    }
    return true;
  }

  pid_t pid_ = -1;
  int in_fd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string pending_;
  bool close_stdin_ = false;
  std::string out_;
  std::string err_;
  bool reaped_ = false;
  int status_ = -1;
};

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs `circbuf ARGS...` to its end with `input` on stdin.
inline Result Circbuf(std::vector<std::string> const& args, std::string_view input = {},
                      std::chrono::milliseconds timeout = std::chrono::seconds(20), Options const& options = {}) {
  Tool tool(args, options);
  tool.Write(input);
  int const code = tool.Wait(timeout);
  return {code, tool.Out(), tool.Err()};
}

// Lines of `text` (without their newlines).
inline std::vector<std::string> Lines(std::string const& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The value of "key": in a one-level JSON object (number, bool or string
// without its quotes); "" if absent.
inline std::string JsonField(std::string const& json, std::string const& key) {
  std::smatch m;
  std::regex const re("\"" + key + "\":\\s*(\"([^\"]*)\"|[^,}\\s]+)");
  if (!std::regex_search(json, m, re)) return "";
  return m[2].matched ? m[2].str() : m[1].str();
}

// Longest line in `text`, in bytes.
inline std::size_t Widest(std::string const& text) {
  std::size_t widest = 0;
  for (auto const& line : Lines(text)) widest = std::max(widest, line.size());
  return widest;
}

}  // namespace circbuf::test
