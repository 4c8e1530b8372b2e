// libcircbuf.so.0: the C ABI of capi/circbuf.h over the C++ API.
//
// Every entry point catches everything: no exception crosses the ABI (error
// messages that allocate are built inside a try: FailWith). The hot calls
// (circbuf_write, circbuf_read, circbuf_read_in_place, circbuf_poll,
// circbuf_read_batch) are one call each, inline the C++ hot path
// (always_inline in the module interface) and take no lock; none allocates
// but circbuf_poll's first call (its 64 KiB copy buffer). The try blocks
// cost nothing unless something throws. Error messages go to a thread-local
// string, which only the error path touches.
//
// Small includes only: this unit imports circbuf (docs/toolchain-notes.md,
// "Includes, imports and where spdlog may go").
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "circbuf.h"

import circbuf;

namespace cb = circbuf::CircularBuffer;

struct circbuf_writer {
  cb::Writer writer;
};
struct circbuf_reader {
  cb::Reader reader;
};

// Not an anonymous namespace: g++-14 ICEs on internal-linkage helpers in module
// units at -O1 and up (docs/toolchain-notes.md, "ICE in ipa_comdats").
namespace capi_impl {

thread_local std::string t_error;

int Fail(int code, std::string_view message) noexcept {
  try {
    t_error.assign(message);
  } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory for the message itself; the code says enough
  }
  return code;
}

int CodeForErrno(int error) noexcept {
  switch (error) {
    case ENOENT: return CIRCBUF_E_NOENT;
    case EACCES:
    case EPERM: return CIRCBUF_E_PERM;
    case EBUSY:
    case EEXIST: return CIRCBUF_E_BUSY;
    case EINVAL:
    case ENAMETOOLONG: return CIRCBUF_E_INVALID;
    case EIO: return CIRCBUF_E_STATE;
    case ENOMEM: return CIRCBUF_E_NOMEM;
    default: return CIRCBUF_E_SYSTEM;
  }
}

// What the exception in flight means, as a code (and its message in
// t_error). Call from a catch block. `invalid_argument` is the code for
// std::invalid_argument: E_NOTRING where names were checked first (the
// library throws it for a ring that is not one), E_INVALID elsewhere;
// `length` likewise for std::length_error.
int FromException(int invalid_argument = CIRCBUF_E_INVALID, int length = CIRCBUF_E_INVALID) noexcept {
  try {
    throw;
  } catch (std::system_error const& e) {
    return Fail(CodeForErrno(e.code().value()), e.what());
  } catch (std::length_error const& e) {
    return Fail(length, e.what());
  } catch (std::invalid_argument const& e) {
    return Fail(invalid_argument, e.what());
  } catch (std::logic_error const& e) {
    return Fail(CIRCBUF_E_STATE, e.what());
  } catch (std::bad_alloc const&) {
    return Fail(CIRCBUF_E_NOMEM, "out of memory");
  } catch (std::exception const& e) {
    return Fail(CIRCBUF_E_SYSTEM, e.what());
  } catch (...) {
    return Fail(CIRCBUF_E_SYSTEM, "unknown error");
  }
}

int Null(char const* what) noexcept {
  try {
    return Fail(CIRCBUF_E_INVALID, std::string(what) + " is NULL");
  } catch (...) {  // no memory for the message: the name alone
    return Fail(CIRCBUF_E_INVALID, what);
  }
}

// Fail with a message built by `make` (which may allocate, and so throw).
template <class Make>
int FailWith(int code, Make make) noexcept {
  try {
    return Fail(code, make());
  } catch (...) {
    return Fail(code, "out of memory for the error message");
  }
}

// The Spec for `name` and `capacity` (0 allowed: a reader's "whatever it
// has"), or an error code: the name and size rules come first, so that
// what the constructor throws afterwards is about the ring itself.
int MakeSpec(char const* name, std::uint64_t capacity, cb::Spec& spec) noexcept {
  if (name == nullptr) return Null("name");
  try {
    spec = cb::Spec::Make(name, capacity);
    return 0;
  } catch (...) {
    return FromException();
  }
}

constexpr int ToC(cb::WaitResult r) noexcept {
  switch (r) {
    case cb::WaitResult::kStopped: return CIRCBUF_WAIT_STOPPED;
    case cb::WaitResult::kReady: return CIRCBUF_WAIT_READY;
    case cb::WaitResult::kTruncated: return CIRCBUF_WAIT_TRUNCATED;
    case cb::WaitResult::kTakenOver: return CIRCBUF_WAIT_TAKEN_OVER;
    case cb::WaitResult::kClosed: return CIRCBUF_WAIT_CLOSED;
    case cb::WaitResult::kDead: return CIRCBUF_WAIT_DEAD;
    case cb::WaitResult::kTimeout: return CIRCBUF_WAIT_TIMEOUT;
  }
  return CIRCBUF_E_SYSTEM;
}

constexpr int ToC(cb::WriterStatus s) noexcept {
  switch (s) {
    case cb::WriterStatus::kNone: return CIRCBUF_WRITER_NONE;
    case cb::WriterStatus::kAlive: return CIRCBUF_WRITER_ALIVE;
    case cb::WriterStatus::kClosed: return CIRCBUF_WRITER_CLOSED;
    case cb::WriterStatus::kDead: return CIRCBUF_WRITER_DEAD;
  }
  return CIRCBUF_WRITER_NONE;
}

constexpr int ToC(cb::SegmentKind k) noexcept {
  switch (k) {
    case cb::SegmentKind::kForeign: return CIRCBUF_KIND_FOREIGN;
    case cb::SegmentKind::kSegment: return CIRCBUF_KIND_SEGMENT;
    case cb::SegmentKind::kRing: return CIRCBUF_KIND_RING;
    case cb::SegmentKind::kRingOther: return CIRCBUF_KIND_RING_OTHER;
    case cb::SegmentKind::kUnfinished: return CIRCBUF_KIND_UNFINISHED;
  }
  return CIRCBUF_KIND_FOREIGN;
}

// Copies `text` into out[0 .. N), cut to fit, NUL-terminated.
template <std::size_t N>
void CopyText(char (&out)[N], std::string_view text) noexcept {
  std::size_t const n = text.size() < N - 1 ? text.size() : N - 1;
  text.copy(out, n);  // copies n characters, adds no NUL: that is the next line
  out[n] = '\0';
}

void Fill(circbuf_info& out, cb::SegmentInfo const& s) noexcept {
  std::uint32_t const size = out.size;
  std::memset(&out, 0, sizeof out);
  out.size = size;
  out.kind = ToC(s.kind);
  CopyText(out.name, s.name);
  out.capacity = s.capacity;
  out.tail = s.tail;
  out.messages = s.messages;
  out.writer_epoch = s.writer_epoch;
  out.max_message = s.max_message;
  out.refcount = s.refcount;
  out.writer_pid = s.writer_pid;
  out.writer_status = ToC(s.writer);
  out.stale = s.stale && (!s.has_data || s.data_stale) ? 1 : 0;
  out.sleeping = s.sleeping ? 1 : 0;
  out.corrupt = s.corrupt.empty() ? 0 : 1;
  out.damaged = s.damage.empty() ? 0 : 1;
  out.open_errno = s.open_errno;
  CopyText(out.problem, !s.corrupt.empty() ? s.corrupt : s.damage);
}

template <class T>
bool SizeOk(T const* p) noexcept {
  return p != nullptr && p->size >= sizeof(T);
}

int BadSize(char const* what) noexcept {
  return FailWith(CIRCBUF_E_INVALID, [what] {
    return std::string(what) + ": its size field is smaller than this library's struct "
                               "(set it with sizeof, or use the _init function)";
  });
}

}  // namespace capi_impl
using namespace capi_impl;  // NOLINT(google-build-using-namespace): this unit's own helpers

extern "C" {

char const* circbuf_last_error(void) { return t_error.c_str(); }

char const* circbuf_version(void) { return CIRCBUF_VERSION_STRING; }

// ---- Writer -------------------------------------------------------------------------

void circbuf_writer_options_init(circbuf_writer_options* options) {
  if (options == nullptr) return;
  *options = {};
  options->size = sizeof(circbuf_writer_options);
  options->mode = 0600;
  options->huge_pages = CIRCBUF_HUGE_PAGES_AS_MOUNTED;
}

int circbuf_writer_open(char const* name, std::uint64_t capacity, circbuf_writer_options const* options,
                        circbuf_writer** out) {
  if (out == nullptr) return Null("out");
  *out = nullptr;
  if (capacity == 0) return Fail(CIRCBUF_E_INVALID, "capacity 0: a writer needs 4096 .. 52428800 bytes");
  cb::Spec spec{};
  if (int const rc = MakeSpec(name, capacity, spec); rc != 0) return rc;
  cb::WriterOptions cpp{};
  if (options != nullptr) {
    if (!SizeOk(options)) return BadSize("circbuf_writer_options");
    if (options->mode > 07777) {
      return FailWith(CIRCBUF_E_INVALID,
                      [options] { return "mode " + std::to_string(options->mode) + ": not a file mode"; });
    }
    if (options->reserved != 0) return Fail(CIRCBUF_E_INVALID, "circbuf_writer_options.reserved: must be 0");
    cpp.mode = static_cast<mode_t>(options->mode);
    switch (options->huge_pages) {
      case CIRCBUF_HUGE_PAGES_AS_MOUNTED: cpp.huge_pages = circbuf::HugePages::kAsMounted; break;
      case CIRCBUF_HUGE_PAGES_PREFER: cpp.huge_pages = circbuf::HugePages::kPrefer; break;
      case CIRCBUF_HUGE_PAGES_REQUIRE: cpp.huge_pages = circbuf::HugePages::kRequire; break;
      default:
        return FailWith(CIRCBUF_E_INVALID, [options] {
          return "huge_pages " + std::to_string(options->huge_pages) + ": not a CIRCBUF_HUGE_PAGES_*";
        });
    }
  }
  try {
    *out = new circbuf_writer{cb::Writer(spec, cpp)};
    return 0;
  } catch (...) {
    return FromException(CIRCBUF_E_NOTRING, CIRCBUF_E_CAPACITY);
  }
}

void circbuf_writer_close(circbuf_writer* writer) { delete writer; }

int circbuf_write(circbuf_writer* writer, void const* data, std::size_t size) {
  if (writer == nullptr) [[unlikely]] {
    return Null("writer");
  }
  if (data == nullptr && size != 0) [[unlikely]] {
    return Null("data");
  }
  try {
    writer->writer.Write({static_cast<std::byte const*>(data), size});
    return 0;
  } catch (...) {
    return FromException();
  }
}

int circbuf_claim(circbuf_writer* writer, std::size_t size, void** slot) {
  if (writer == nullptr) return Null("writer");
  if (slot == nullptr) return Null("slot");
  *slot = nullptr;
  try {
    *slot = writer->writer.Claim(size).data();
    return 0;
  } catch (...) {
    return FromException();
  }
}

int circbuf_commit(circbuf_writer* writer, std::size_t size) {
  if (writer == nullptr) return Null("writer");
  try {
    writer->writer.Commit(size);
    return 0;
  } catch (std::length_error const& e) {
    return Fail(CIRCBUF_E_INVALID, e.what());
  } catch (std::logic_error const& e) {  // without a claim, or outside it
    char const* const what = e.what();
    return Fail(std::strstr(what, "without a Claim") != nullptr ? CIRCBUF_E_STATE : CIRCBUF_E_INVALID, what);
  } catch (...) {
    return FromException();
  }
}

int circbuf_abort(circbuf_writer* writer) {
  if (writer == nullptr) return Null("writer");
  writer->writer.Abort();
  return 0;
}

int circbuf_writer_skip(circbuf_writer* writer, std::uint64_t count) {
  if (writer == nullptr) return Null("writer");
  try {
    writer->writer.Skip(count);
    return 0;
  } catch (...) {
    return FromException();
  }
}

std::uint64_t circbuf_writer_next_sequence(circbuf_writer const* writer) {
  return writer == nullptr ? 0 : writer->writer.NextSequence();
}

int circbuf_writer_stats_get(circbuf_writer const* writer, circbuf_writer_stats* out) {
  if (writer == nullptr) return Null("writer");
  if (out == nullptr) return Null("out");
  if (!SizeOk(out)) return BadSize("circbuf_writer_stats");
  cb::WriterStats const s = writer->writer.Stats();
  out->took_over = s.took_over ? 1 : 0;
  out->messages = s.messages;
  out->bytes = s.bytes;
  out->laps = s.laps;
  return 0;
}

std::uint64_t circbuf_writer_capacity(circbuf_writer const* writer) {
  return writer == nullptr ? 0 : writer->writer.Capacity();
}

std::size_t circbuf_writer_max_message(circbuf_writer const* writer) {
  return writer == nullptr ? 0 : writer->writer.MaxMessageSize();
}

// ---- Reader -------------------------------------------------------------------------

void circbuf_reader_options_init(circbuf_reader_options* options) {
  if (options == nullptr) return;
  *options = {};
  options->size = sizeof(circbuf_reader_options);
  options->start = CIRCBUF_START_LATEST;
  options->on_lap = CIRCBUF_ON_LAP_HEADROOM;
  options->wait_for_buffer_ms = 0;
  options->liveness_ms = 100;
}

int circbuf_reader_open(char const* name, std::uint64_t capacity, circbuf_reader_options const* options,
                        circbuf_reader** out) {
  if (out == nullptr) return Null("out");
  *out = nullptr;
  cb::Spec spec{};
  if (int const rc = MakeSpec(name, capacity, spec); rc != 0) return rc;
  cb::ReaderOptions cpp{};
  if (options != nullptr) {
    if (!SizeOk(options)) return BadSize("circbuf_reader_options");
    switch (options->start) {
      case CIRCBUF_START_LATEST: cpp.start = cb::StartAt::kLatest; break;
      case CIRCBUF_START_OLDEST: cpp.start = cb::StartAt::kOldest; break;
      case CIRCBUF_START_NEXT: cpp.start = cb::StartAt::kNext; break;
      default:
        return FailWith(CIRCBUF_E_INVALID,
                        [options] { return "start " + std::to_string(options->start) + ": not a CIRCBUF_START_*"; });
    }
    switch (options->on_lap) {
      case CIRCBUF_ON_LAP_HEADROOM: cpp.on_lap = cb::OnLap::kHeadroom; break;
      case CIRCBUF_ON_LAP_OLDEST: cpp.on_lap = cb::OnLap::kOldest; break;
      case CIRCBUF_ON_LAP_LATEST: cpp.on_lap = cb::OnLap::kLatest; break;
      default:
        return FailWith(CIRCBUF_E_INVALID,
                        [options] { return "on_lap " + std::to_string(options->on_lap) + ": not a CIRCBUF_ON_LAP_*"; });
    }
    if (options->liveness_ms == 0) return Fail(CIRCBUF_E_INVALID, "liveness_ms 0: must be at least 1");
    if (options->reserved != 0) return Fail(CIRCBUF_E_INVALID, "circbuf_reader_options.reserved: must be 0");
    cpp.wait_for_buffer = std::chrono::milliseconds(options->wait_for_buffer_ms);
    cpp.liveness_interval = std::chrono::milliseconds(options->liveness_ms);
  }
  try {
    *out = new circbuf_reader{cb::Reader(spec, cpp)};
    return 0;
  } catch (...) {
    return FromException(CIRCBUF_E_NOTRING, CIRCBUF_E_CAPACITY);
  }
}

void circbuf_reader_close(circbuf_reader* reader) { delete reader; }

int circbuf_read(circbuf_reader* reader, void* buffer, std::size_t capacity) {
  if (reader == nullptr) [[unlikely]] {
    return Null("reader");
  }
  if (buffer == nullptr && capacity != 0) [[unlikely]] {
    return Null("buffer");
  }
  try {
    return reader->reader.Read({static_cast<std::byte*>(buffer), capacity});
  } catch (...) {  // Read throws nothing today; the ABI must not pass on whatever a later version might
    return FromException();
  }
}

int circbuf_read_in_place(circbuf_reader* reader, circbuf_view_fn view, void* context) {
  if (reader == nullptr) [[unlikely]] {
    return Null("reader");
  }
  if (view == nullptr) [[unlikely]] {
    return Null("view");
  }
  try {
    return reader->reader.ReadInPlace(
        [view, context](std::span<std::byte const> message) { view(message.data(), message.size(), context); });
  } catch (...) {
    return FromException();
  }
}

int circbuf_poll(circbuf_reader* reader, circbuf_handler_fn handler, void* context, std::size_t max,
                 circbuf_poll_result* out) {
  if (reader == nullptr) [[unlikely]] {
    return Null("reader");
  }
  if (handler == nullptr) [[unlikely]] {
    return Null("handler");
  }
  if (out != nullptr && !SizeOk(out)) [[unlikely]] {
    return BadSize("circbuf_poll_result");
  }
  try {
    cb::PollResult const r = reader->reader.Poll(
        [handler, context](std::span<std::byte const> message) { handler(message.data(), message.size(), context); },
        max < INT_MAX ? max : INT_MAX);  // the count must fit the int returned
    if (out != nullptr) {
      out->stopped = r.stopped == cb::Outcome::kMessage   ? 1
                     : r.stopped == cb::Outcome::kCorrupt ? CIRCBUF_CORRUPT
                                                          : CIRCBUF_EMPTY;
      out->delivered = r.delivered;
      out->laps = r.laps;
      out->lost = r.lost;
    }
    return r.delivered > INT_MAX ? INT_MAX : static_cast<int>(r.delivered);
  } catch (...) {  // the first call allocates the copy buffer
    return FromException();
  }
}

int circbuf_read_batch(circbuf_reader* reader, void* buffer, std::size_t capacity, std::uint32_t* sizes,
                       std::size_t max, circbuf_poll_result* out) {
  if (reader == nullptr) [[unlikely]] {
    return Null("reader");
  }
  if (buffer == nullptr && capacity != 0) [[unlikely]] {
    return Null("buffer");
  }
  if (sizes == nullptr && max != 0) [[unlikely]] {
    return Null("sizes");
  }
  if (out != nullptr && !SizeOk(out)) [[unlikely]] {
    return BadSize("circbuf_poll_result");
  }
  auto* const base = static_cast<std::byte*>(buffer);
  cb::Reader& r = reader->reader;
  std::size_t used = 0;
  std::size_t k = 0;
  std::uint64_t laps = 0;
  std::uint64_t lost = 0;
  int stopped = 1;
  int rc = 0;
  try {
    // At most `max` laps too (as Poll): a writer that laps this reader on
    // every read cannot keep the call from returning.
    while (k < max && k < INT_MAX && laps <= max) {
      int const n = r.Read({base + used, capacity - used});
      if (n > 0) {
        sizes[k++] = static_cast<std::uint32_t>(n);
        used += static_cast<std::size_t>(n);
      } else if (n == cb::kLapped) {
        ++laps;
        lost += r.LastLoss();
      } else if (n == cb::kBufferTooSmall) {
        if (k == 0) rc = CIRCBUF_BUFFER_TOO_SMALL;
        break;  // stays unread: the next call starts with it
      } else {
        stopped = n;  // kEmpty or kCorrupt
        break;
      }
    }
  } catch (...) {
    rc = FromException();
  }
  if (out != nullptr) {  // also with an error: the laps passed are the reader's already
    out->stopped = stopped;
    out->delivered = k;
    out->laps = laps;
    out->lost = lost;
  }
  return rc != 0 ? rc : static_cast<int>(k);
}

int circbuf_skip(circbuf_reader* reader) {
  if (reader == nullptr) return Null("reader");
  try {
    return reader->reader.Skip();
  } catch (...) {
    return FromException();
  }
}

int circbuf_reader_wait(circbuf_reader* reader, std::int64_t timeout_ns) {
  if (reader == nullptr) return Null("reader");
  try {
    return ToC(timeout_ns < 0 ? reader->reader.Wait() : reader->reader.Wait(std::chrono::nanoseconds(timeout_ns)));
  } catch (...) {
    return FromException();
  }
}

void circbuf_reader_request_stop(circbuf_reader* reader) {
  if (reader != nullptr) reader->reader.RequestStop();
}

void circbuf_reader_clear_stop(circbuf_reader* reader) {
  if (reader != nullptr) reader->reader.ClearStop();
}

std::uint64_t circbuf_reader_delivered(circbuf_reader const* reader) {
  return reader == nullptr ? 0 : reader->reader.Delivered();
}
std::uint64_t circbuf_reader_lost(circbuf_reader const* reader) {
  return reader == nullptr ? 0 : reader->reader.Lost();
}
std::uint64_t circbuf_reader_last_loss(circbuf_reader const* reader) {
  return reader == nullptr ? 0 : reader->reader.LastLoss();
}
std::size_t circbuf_reader_pending_size(circbuf_reader const* reader) {
  return reader == nullptr ? 0 : reader->reader.PendingSize();
}
std::uint64_t circbuf_reader_capacity(circbuf_reader const* reader) {
  return reader == nullptr ? 0 : reader->reader.Capacity();
}
std::size_t circbuf_reader_max_message(circbuf_reader const* reader) {
  return reader == nullptr ? 0 : reader->reader.MaxMessageSize();
}

int circbuf_reader_stats_get(circbuf_reader const* reader, circbuf_reader_stats* out) {
  if (reader == nullptr) return Null("reader");
  if (out == nullptr) return Null("out");
  if (!SizeOk(out)) return BadSize("circbuf_reader_stats");
  cb::ReaderStats const s = reader->reader.Stats();
  out->reserved = 0;
  out->delivered = s.delivered;
  out->lost = s.lost;
  out->laps = s.laps;
  out->corrupt = s.corrupt;
  out->skipped = s.skipped;
  return 0;
}

int circbuf_reader_writer_status(circbuf_reader const* reader) {
  if (reader == nullptr) return Null("reader");
  try {
    return ToC(reader->reader.GetWriterStatus());
  } catch (...) {
    return FromException();
  }
}

// ---- Rings seen from outside --------------------------------------------------------

void circbuf_info_init(circbuf_info* info) {
  if (info == nullptr) return;
  std::memset(info, 0, sizeof *info);
  info->size = sizeof(circbuf_info);
}

int circbuf_inspect(char const* name, circbuf_info* out) {
  if (name == nullptr) return Null("name");
  if (out == nullptr) return Null("out");
  if (!SizeOk(out)) return BadSize("circbuf_info");
  try {
    Fill(*out, cb::Inspect(name));
    return 0;
  } catch (std::system_error const& e) {
    if (e.code().value() == EINVAL) return Fail(CIRCBUF_E_NOTRING, e.what());  // not a regular file
    return FromException();
  } catch (...) {
    return FromException();
  }
}

int circbuf_list(char const* pattern, circbuf_info* out, std::size_t max) {
  if (out == nullptr && max != 0) return Null("out");
  for (std::size_t i = 0; i < max; ++i) {
    if (!SizeOk(&out[i])) return BadSize("circbuf_info");
  }
  try {
    std::vector<cb::SegmentInfo> const all = cb::List(pattern == nullptr ? "" : pattern);
    for (std::size_t i = 0; i < all.size() && i < max; ++i) Fill(out[i], all[i]);
    return all.size() > INT_MAX ? INT_MAX : static_cast<int>(all.size());
  } catch (...) {
    return FromException();
  }
}

int circbuf_remove(char const* name, int force) {
  cb::Spec spec{};
  if (int const rc = MakeSpec(name, 0, spec); rc != 0) return rc;
  try {
    cb::RemoveResult const r = cb::Remove(name, force != 0);
    if (!r.busy.empty()) return Fail(CIRCBUF_E_BUSY, r.busy);
    if (r.removed.empty()) return Fail(CIRCBUF_E_NOENT, std::string(name) + ": no such ring");
    return 0;
  } catch (...) {
    return FromException(CIRCBUF_E_NOTRING);
  }
}

}  // extern "C"
