// circbuf tool: what the subcommands share. Plain C++ (no module types), so
// every .cpp includes it among its #includes, before `import circbuf;`
// (docs/toolchain-notes.md, "Includes, imports and where spdlog may go", rule 1).
#pragma once

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace CLI {
class App;
}

namespace circbuf::tool {

// ---- Exit codes (documented in `circbuf --help`) --------------------------------
enum Exit : int {
  kOk = 0,
  kUsage = 1,          // bad command line
  kNoSuchBuffer = 2,   // the buffer does not exist
  kInvalid = 3,        // bad name, bad size, bad input data
  kPermission = 4,     // permission denied
  kNotCircbuf = 5,     // not a circbuf buffer, other layout version, corrupt
  kBusy = 6,           // live processes attached, or the buffer has a live writer
  kSystem = 7,         // any other system error
  kCheckFailed = 8,    // demo or bench found wrong data
  kUnreachable = 9,    // bridge: the NATS server (or JetStream) cannot be reached
  kConflict = 10,      // bridge: the stream's configuration conflicts with the flags, or JetStream refused
  kInterrupted = 130,  // demo or bench stopped by SIGINT / SIGTERM
};
extern char const* const kExitCodeHelp;

// An error the tool reports as one line on stderr, with its exit code.
class Error : public std::runtime_error {
 public:
  Error(int code, std::string const& message) : std::runtime_error(message), code_(code) {}
  [[nodiscard]] int Code() const noexcept { return code_; }

 private:
  int code_;
};

// Exit code for an errno value (ENOENT -> kNoSuchBuffer, EACCES -> kPermission, ...).
int ExitForErrno(int error);
// The text of errno value `error`, as strerror gives it, but thread-safe
// (libstdc++ uses strerror_r; std::strerror shares one buffer).
inline std::string ErrnoText(int error) { return std::generic_category().message(error); }
// Maps whatever a library call threw to an Error; rethrows Error as is. Call
// from a catch block. std::invalid_argument means "not circbuf / corrupt"
// here: names are validated before any library call (CheckRingName).
[[noreturn]] void RethrowAsError();

// ---- Names and sizes ----------------------------------------------------------------
// Validates a ring name ("/x", or "x", which becomes "/x"); throws Error(kInvalid).
std::string CheckRingName(std::string name);
// "4096", "64KiB", "64K", "50MiB", "1GiB" (powers of 1024), "64KB", "50MB"
// (powers of 1000), optional "B". Throws Error(kInvalid) naming `what`.
std::uint64_t ParseSize(std::string_view text, std::string_view what);
// Ring capacity: ParseSize plus the library's range check (4096 .. 52428800).
std::uint64_t ParseCapacity(std::string_view text);

// ---- Formatting ------------------------------------------------------------------------
std::string HumanBytes(double bytes);        // "1.0 MiB", "512 B"
std::string HumanCount(double count);        // "1.23M", "950"
std::string HumanNs(double ns);              // "85 ns", "1.2 us", "3.40 ms"
std::string JsonString(std::string_view s);  // quoted and escaped

// A text table: columns left- or right-aligned, two spaces apart.
class Table {
 public:
  struct Column {
    std::string title;
    bool right = false;
  };
  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Prints to stdout with `indent` spaces before each line.
  void Print(int indent = 0) const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// ---- Signals --------------------------------------------------------------------------
// Set by SIGINT / SIGTERM once InstallStopHandlers() ran (no SA_RESTART, so a
// blocking read returns EINTR).
extern volatile std::sig_atomic_t g_stop;
void InstallStopHandlers();
bool StopRequested() noexcept;
// Also called by the stop handler (async-signal-safe functions only), e.g.
// Reader::RequestStop of a reader blocked in Wait; nullptr: none.
void SetStopHook(void (*hook)() noexcept);

std::uint64_t NowNs();  // CLOCK_MONOTONIC
bool IsTerminal(int fd);
// A recording written with --rotate: FILE, then FILE.1, FILE.2, ... as long as
// they exist (circbuf.record's rotation names them so). At least {file}.
std::vector<std::string> RecordingParts(std::string const& file);

// ---- Latency histogram ----------------------------------------------------------------
// Log-linear buckets: exact below 128 ns, then 64 buckets per power of two
// (within 1.6 %). Fixed size, no allocation on Add.
class Histogram {
 public:
  void Add(std::uint64_t ns) noexcept;
  [[nodiscard]] std::uint64_t Count() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t Max() const noexcept { return max_; }
  [[nodiscard]] std::uint64_t Min() const noexcept { return min_; }
  // Value at quantile q (0 .. 1); 0 if empty.
  [[nodiscard]] std::uint64_t Quantile(double q) const noexcept;

 private:
  static constexpr std::size_t kBuckets = 128 + 64 * 58;
  std::uint64_t counts_[kBuckets]{};
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
};

// ---- Subcommands -----------------------------------------------------------------------
// Each Add* adds its subcommand to `app` and returns it with the function
// that runs it once the command line is parsed (returns the exit code).
struct Command {
  CLI::App* app;
  int (*run)();
};
Command AddLs(CLI::App& app);
Command AddStat(CLI::App& app);
Command AddTail(CLI::App& app);
Command AddPub(CLI::App& app);
Command AddRm(CLI::App& app);
Command AddGc(CLI::App& app);
Command AddDemo(CLI::App& app);
Command AddBench(CLI::App& app);
Command AddRecord(CLI::App& app);  // record.cpp: record, info, dump
Command AddInfo(CLI::App& app);
Command AddDump(CLI::App& app);
Command AddReplay(CLI::App& app);  // replay.cpp
#ifdef CIRCBUF_HAVE_BRIDGE
Command AddBridge(CLI::App& app);  // bridge/command.cpp: bridge out, bridge in (NATS JetStream)
#endif

}  // namespace circbuf::tool
