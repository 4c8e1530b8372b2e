// circbuf tool: exit codes, names and sizes, formatting, signals, histogram.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "cli.hpp"

import circbuf;

#include "ring_info.hpp"  // after the import: it names module types (docs/toolchain-notes.md)

namespace cb = circbuf::CircularBuffer;

namespace circbuf::tool {

char const* const kExitCodeHelp = "Exit codes:\n"
                                  "  0    success\n"
                                  "  1    usage error (bad command line)\n"
                                  "  2    no such buffer\n"
                                  "  3    invalid argument: buffer name, size, input data\n"
                                  "  4    permission denied\n"
                                  "  5    not a circbuf buffer, another layout version, or corrupt\n"
                                  "  6    busy: live processes attached, or another live writer\n"
                                  "  7    other system error\n"
                                  "  8    demo or bench found wrong data\n"
                                  "  9    bridge: the NATS server (or JetStream) cannot be reached\n"
                                  "  10   bridge: the stream's configuration conflicts with the flags\n"
                                  "  130  demo or bench interrupted (Ctrl-C)\n"
                                  "\n"
                                  "Environment: CIRCBUF_LOG=debug|info|warn|error|off sets the library's log level.";

int ExitForErrno(int error) {
  switch (error) {
    case ENOENT: return kNoSuchBuffer;
    case EACCES:
    case EPERM: return kPermission;
    case EBUSY:
    case EEXIST: return kBusy;
    case EINVAL:
    case ENAMETOOLONG: return kInvalid;
    default: return kSystem;
  }
}

void RethrowAsError() {
  try {
    throw;
  } catch (Error const&) {
    throw;
  } catch (std::system_error const& e) {
    throw Error(ExitForErrno(e.code().value()), e.what());
  } catch (std::length_error const& e) {
    throw Error(kInvalid, e.what());
  } catch (std::invalid_argument const& e) {
    throw Error(kNotCircbuf, e.what());
  } catch (std::bad_alloc const&) {
    throw Error(kSystem, "out of memory");
  } catch (std::exception const& e) {
    throw Error(kSystem, e.what());
  }
}

std::string CheckRingName(std::string name) {
  if (!name.empty() && name.front() != '/') name.insert(name.begin(), '/');
  try {
    (void)cb::Spec::Make(name, 0);
  } catch (std::exception const& e) {
    throw Error(kInvalid, e.what());
  }
  return name;
}

std::uint64_t ParseSize(std::string_view text, std::string_view what) {
  auto const bad = [&](char const* why) {
    return Error(kInvalid, std::string(what) + " \"" + std::string(text) + "\": " + why +
                               " (examples: 4096, 64KiB, 50MiB, 64KB)");
  };
  std::size_t i = 0;
  std::uint64_t value = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) {
    auto const digit = static_cast<std::uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) throw bad("too large");
    value = value * 10 + digit;
    ++i;
  }
  if (i == 0) throw bad("not a size");
  while (i < text.size() && text[i] == ' ') ++i;
  std::string suffix;
  for (; i < text.size(); ++i) suffix += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
  struct Unit {
    char const* name;
    std::uint64_t factor;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},         {"b", 1},         {"k", 1024},       {"ki", 1024},         {"kib", 1024},
      {"kb", 1000},    {"m", 1U << 20},  {"mi", 1U << 20},  {"mib", 1U << 20},    {"mb", 1'000'000},
      {"g", 1U << 30}, {"gi", 1U << 30}, {"gib", 1U << 30}, {"gb", 1'000'000'000}};
  for (auto const& unit : kUnits) {
    if (suffix == unit.name) {
      if (value > std::numeric_limits<std::uint64_t>::max() / unit.factor) throw bad("too large");
      return value * unit.factor;
    }
  }
  throw bad("unknown unit");
}

std::uint64_t ParseCapacity(std::string_view text) {
  std::uint64_t const bytes = ParseSize(text, "capacity");
  if (bytes < cb::kMinCapacity || bytes > cb::kMaxCapacity) {
    throw Error(kInvalid, "capacity \"" + std::string(text) + "\" (" + std::to_string(bytes) + " bytes): must be " +
                              std::to_string(cb::kMinCapacity) + " .. " + std::to_string(cb::kMaxCapacity) +
                              " bytes (4KiB .. 50MiB)");
  }
  return bytes;
}

namespace {

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// 3 significant digits for small numbers: 1.23, 12.3, 123.
std::string Short(double v) { return Fixed(v, v < 10 ? 2 : v < 100 ? 1 : 0); }

}  // namespace

std::string HumanBytes(double bytes) {
  static constexpr char const* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  return (u == 0 ? Fixed(bytes, 0) : Short(bytes)) + " " + kUnits[u];
}

std::string HumanCount(double count) {
  if (count < 9'999.5) return Fixed(count, 0);
  if (count < 999.5e3) return Short(count / 1e3) + "k";  // no "1000k"
  if (count < 999.5e6) return Short(count / 1e6) + "M";
  return Short(count / 1e9) + "G";
}

std::string HumanNs(double ns) {
  if (ns < 1'000) return Fixed(ns, 0) + " ns";
  if (ns < 1e6) return Short(ns / 1e3) + " us";
  if (ns < 1e9) return Short(ns / 1e6) + " ms";
  return Short(ns / 1e9) + " s";
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char const c : s) {
    auto const u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void Table::Print(int indent) const {
  std::vector<std::size_t> width(columns_.size());
  for (std::size_t c = 0; c < columns_.size(); ++c) width[c] = columns_[c].title.size();
  for (auto const& row : rows_) {
    for (std::size_t c = 0; c < row.size() && c < width.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  auto const line = [&](auto const& cell) {
    std::string out(static_cast<std::size_t>(indent), ' ');
    for (std::size_t c = 0; c < columns_.size(); ++c) {
      std::string const text = cell(c);
      std::string const fill(width[c] - std::min(width[c], text.size()), ' ');
      if (c != 0) out += "  ";
      out += columns_[c].right ? fill + text : text + fill;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    std::printf("%s\n", out.c_str());
  };
  line([&](std::size_t c) { return columns_[c].title; });
  for (auto const& row : rows_) line([&](std::size_t c) { return c < row.size() ? row[c] : std::string(); });
}

volatile std::sig_atomic_t g_stop = 0;

namespace {
std::atomic<void (*)() noexcept> g_stop_hook{nullptr};
static_assert(std::atomic<void (*)() noexcept>::is_always_lock_free);
void OnStop(int /*signal*/) {
  g_stop = 1;
  if (auto* hook = g_stop_hook.load(std::memory_order_acquire)) hook();
}
}  // namespace

void SetStopHook(void (*hook)() noexcept) { g_stop_hook.store(hook, std::memory_order_release); }

void InstallStopHandlers() {
  struct sigaction sa{};
  sa.sa_handler = OnStop;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns EINTR
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

bool StopRequested() noexcept { return g_stop != 0; }

std::uint64_t NowNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U + static_cast<std::uint64_t>(ts.tv_nsec);
}

bool IsTerminal(int fd) { return ::isatty(fd) == 1; }

std::vector<std::string> RecordingParts(std::string const& file) {
  std::vector<std::string> parts{file};
  for (unsigned k = 1;; ++k) {
    std::string next = file + "." + std::to_string(k);
    if (::access(next.c_str(), F_OK) != 0) break;
    parts.push_back(std::move(next));
  }
  return parts;
}

namespace {
std::size_t BucketOf(std::uint64_t v) {
  if (v < 128) return static_cast<std::size_t>(v);
  auto const shift = static_cast<unsigned>(std::bit_width(v)) - 7;
  return 128 + (shift - 1) * 64 + static_cast<std::size_t>((v >> shift) - 64);
}
std::uint64_t ValueOf(std::size_t bucket) {
  if (bucket < 128) return bucket;
  std::size_t const shift = (bucket - 128) / 64 + 1;
  std::uint64_t const top = (bucket - 128) % 64 + 64;
  return (top << shift) + (std::uint64_t{1} << shift) / 2;
}
}  // namespace

void Histogram::Add(std::uint64_t ns) noexcept {
  ++counts_[BucketOf(ns)];
  ++count_;
  max_ = std::max(max_, ns);
  min_ = std::min(min_, ns);
}

std::uint64_t Histogram::Quantile(double q) const noexcept {
  if (count_ == 0) return 0;
  auto const rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  std::uint64_t seen = 0;
  for (std::size_t b = 0; b < kBuckets; ++b) {
    seen += counts_[b];
    if (seen >= std::max<std::uint64_t>(rank, 1)) return std::clamp(ValueOf(b), min_, max_);
  }
  return max_;
}

// ---- Rings seen from outside (ring_info.hpp) ------------------------------------

SegmentInfo InspectSegment(std::string const& name) {
  try {
    return cb::Inspect(name);
  } catch (std::system_error const& e) {
    int const error = e.code().value();
    if (error == EINVAL) throw Error(kNotCircbuf, name + ": not a regular shared-memory file");
    if (error == ENOENT) throw Error(kNoSuchBuffer, name + ": no such buffer");
    throw Error(ExitForErrno(error), name + ": " + ErrnoText(error));
  } catch (...) {
    RethrowAsError();
  }
}

SegmentInfo InspectRing(std::string const& name, bool allow_damaged) {
  SegmentInfo info = InspectSegment(name);
  // A ring's state segment is published before its creator has initialised
  // the State in it (under the segment's lock): give it a moment.
  for (int i = 0; i < 50 && ((info.kind == SegmentKind::kSegment && info.damage.empty() &&
                              info.user_bytes == sizeof(cb::State) && info.state_magic == 0) ||
                             (info.kind == SegmentKind::kUnfinished && info.lock_held));
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    info = InspectSegment(name);
  }
  if (info.kind == SegmentKind::kForeign) throw Error(kNotCircbuf, name + ": not a circbuf buffer (no circbuf header)");
  if (info.kind == SegmentKind::kUnfinished) {
    throw Error(kNotCircbuf,
                name + ": unfinished: its creator " +
                    (info.lock_held ? "has not finished it yet" : "died before finishing it (circbuf gc removes it)"));
  }
  if (info.segment_version != kSegmentVersion) {
    throw Error(kNotCircbuf, name + ": segment layout version " + std::to_string(info.segment_version) +
                                 ", this tool reads version " + std::to_string(kSegmentVersion));
  }
  if (!info.damage.empty() || !info.corrupt.empty()) {
    if (allow_damaged) return info;
    throw Error(kNotCircbuf, name + ": " + (info.corrupt.empty() ? info.damage : info.corrupt));
  }
  if (info.kind == SegmentKind::kSegment) {
    char magic[19];
    std::snprintf(magic, sizeof magic, "0x%016llx", static_cast<unsigned long long>(info.state_magic));
    throw Error(kNotCircbuf, name + ": a circbuf segment, but not a ring (State magic " + magic + ")");
  }
  if (info.kind == SegmentKind::kRingOther) {
    throw Error(kNotCircbuf, name + ": ring layout version " + std::to_string(info.ring_version) +
                                 ", this tool reads version " + std::to_string(cb::kRingVersion));
  }
  return info;
}

std::string WriterName(SegmentInfo const& s) { return std::string(cb::ToString(s.writer)); }

}  // namespace circbuf::tool
