// circbuf tool: what the subcommands share. Plain C++ (no module types), so
// every .cpp includes it among its #includes, before `import circbuf;`
// (TOOLCHAIN.md pitfall 3).
#pragma once

#include <sys/types.h>

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

// ---- Segments in /dev/shm (inspect.cpp) -------------------------------------------------
// What a read-only look at a segment shows (no attaching: refcounts untouched).
enum class Kind : std::uint8_t {
  kForeign,    // not circbuf's (no circbuf header), or not finished yet
  kSegment,    // a circbuf SharedMemory segment that is not a ring's state
  kRing,       // the state segment of a ring (NAME; its data is NAME.data)
  kRingOther,  // ring magic, other layout version (or unreadable state)
  kUnfinished,  // a creator has not finished it, or died first (leftovers.cpp)
};

struct SegmentInfo {
  std::string name;  // "/quotes"
  Kind kind = Kind::kForeign;
  int open_errno = 0;           // non-zero: could not be opened (e.g. EACCES)
  std::uint64_t file_bytes = 0;
  std::uint32_t refcount = 0;   // attachments recorded (dead ones until noticed)
  std::uint32_t segment_version = 0;
  std::uint64_t user_bytes = 0;
  pid_t creator_pid = 0;
  bool stale = false;           // no live process holds it (flock probe)
  // Rings only:
  std::uint32_t ring_version = 0;
  std::uint64_t capacity = 0;
  std::uint64_t chunk = 0;
  std::uint32_t max_message = 0;
  std::uint64_t tail = 0;
  std::uint64_t messages = 0;   // sequence number of the latest record + 1
  pid_t writer_pid = 0;
  std::string writer;           // "none", "alive", "closed", "dead"
  std::uint64_t writer_epoch = 0;
  bool sleeping = false;  // a reader is asleep in Wait (or about to be): the wake word is armed
  bool has_data = false;        // NAME.data exists
  bool data_stale = false;
  std::uint32_t data_refcount = 0;
  // Unfinished segments only:
  bool lock_only = false;  // only its lock, /dev/shm/sem.NAME, is there
  bool lock_held = false;  // a live process holds that lock (creating it)
  // Non-empty: the ring's State breaks the library's rules (layout.cppm,
  // IWrapper::Validate): one line naming the field, what it holds and what
  // would be right. Nothing derived from such a State is computed.
  std::string corrupt;
  std::uint64_t state_magic = 0;  // the State's magic (0: maybe not initialised yet)
  // Non-empty: the segment's file (or, for a ring, its data segment's) is not
  // as long as its header says, "truncated or damaged: ..." (the library
  // refuses such a ring; reading it here is safe: nothing is mapped).
  std::string damage;
};

// Looks at one segment (name with leading '/'). Throws Error on failure to
// open (ENOENT -> kNoSuchBuffer, EACCES -> kPermission).
SegmentInfo Inspect(std::string const& name);
// Inspect, then Error(kNotCircbuf) unless it is a ring of our layout version,
// undamaged and not corrupt (with `allow_damaged`, a damaged or corrupt ring
// is returned instead: see SegmentInfo::damage and ::corrupt).
SegmentInfo InspectRing(std::string const& name, bool allow_damaged = false);
// Every segment in /dev/shm, by name; unreadable ones have open_errno set.
// NAME.data segments are listed as well (kind kSegment), and circbuf locks
// without their segment (kind kUnfinished, lock_only; see leftovers.cpp).
std::vector<SegmentInfo> ScanSegments();
// ---- Unfinished segments (leftovers.cpp) ----------------------------------------------
bool LockExists(std::string const& name);  // /dev/shm/sem.NAME exists
bool LockHeld(std::string const& name);    // a live process holds it (flock probe)
// Under the segment's lock: removes an unfinished segment whose creator died,
// or a lock with no segment. False (and leaves it) if a live process holds
// the lock, or it is no longer unfinished.
bool RemoveUnfinished(std::string const& name);
// Samples tail and messages again (for rates). False if the segment is gone.
bool Resample(std::string const& name, std::uint64_t& tail, std::uint64_t& messages);
// Under the segment's lock: unlinks it if no live process holds it (or
// `force`). Returns false (and leaves it) if it is live and not forced.
bool RemoveSegment(std::string const& name, bool force);
// fnmatch on names ("/cbt-*"); an empty pattern matches everything.
bool NameMatches(std::string const& pattern, std::string const& name);

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

}  // namespace circbuf::tool
