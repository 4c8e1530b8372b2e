// circbuf bridge: what `bridge out` and `bridge in` share about NATS
// JetStream (docs/bridge.md): the flags, the connection (reconnection with
// backoff, its events logged), the stream (created when missing, refused
// with one line when its configuration conflicts with the flags), the
// message headers, and owning wrappers for the C client's objects.
// Plain C++ that names no module type, so it is included with the other
// #includes, before `import circbuf;` (docs/toolchain-notes.md, "Includes,
// imports and where spdlog may go", rule 1).
#pragma once

#include <nats/nats.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace circbuf::tool::bridge {

// Headers of every message the bridge publishes (docs/bridge.md, "On the wire").
inline constexpr char const* kSeqHeader = "Circbuf-Seq";  // the ring's sequence number (a gap: its first)
inline constexpr char const* kGapHeader = "Circbuf-Gap";  // a gap message: this many messages lost upstream
inline constexpr char const* kMsgIdHeader = "Nats-Msg-Id";

struct ConnectFlags {
  std::string servers = "nats://127.0.0.1:4222";  // comma-separated URLs
  std::string creds;                              // a .creds file; empty: none
  double connect_timeout = 5;                     // seconds, per attempt
};

struct StreamFlags {
  std::string stream;
  std::string subject;
  std::string max_bytes = "1GiB";  // retention: the stream's MaxBytes
  double max_age = 86400;          // retention: seconds (0: no limit)
  int replicas = 1;
  std::string storage = "file";   // file | memory
  double duplicate_window = 120;  // seconds: Nats-Msg-Id de-duplication
  // Which of the above were given on the command line: only those can
  // conflict with an existing stream.
  bool max_bytes_given = false;
  bool max_age_given = false;
  bool replicas_given = false;
  bool storage_given = false;
  bool duplicate_window_given = false;
};

// Throws Error(kInvalid) unless `subject` is a NATS subject without
// wildcards (tokens of printable characters but '*' and '>', separated by
// single dots), or `stream` a valid stream name.
void CheckSubject(std::string const& subject);
void CheckStreamName(std::string const& stream);

// The text of the client's last error for status `s`.
std::string NatsError(natsStatus s);

struct MsgDeleter {
  void operator()(natsMsg* m) const noexcept { natsMsg_Destroy(m); }
};
using MsgPtr = std::unique_ptr<natsMsg, MsgDeleter>;

// A header's value parsed as an unsigned decimal number; nullopt if absent or not a number.
std::optional<std::uint64_t> HeaderNumber(natsMsg* msg, char const* key);

// A connection and its JetStream context. The connection retries for ever
// once established (a backoff from 50 ms to 2 s between attempts; every
// disconnect and reconnect logged), and fails the first connect with
// Error(kUnreachable) and one line.
class Connection {
 public:
  // `js_options` (may be null) configures the JetStream context (asynchronous publishing).
  Connection(ConnectFlags const& flags, std::string const& name, jsOptions* js_options);
  ~Connection();
  Connection(Connection const&) = delete;
  Connection& operator=(Connection const&) = delete;
  Connection(Connection&&) = delete;
  Connection& operator=(Connection&&) = delete;

  [[nodiscard]] natsConnection* Nc() const noexcept { return nc_; }
  [[nodiscard]] jsCtx* Js() const noexcept { return js_; }
  [[nodiscard]] bool Connected() const noexcept;
  [[nodiscard]] std::string const& Servers() const noexcept { return servers_text_; }

 private:
  natsOptions* options_ = nullptr;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  std::string servers_text_;
};

// What the bridge needs to know about its stream.
struct StreamState {
  bool created = false;      // this call created it
  bool allow_direct = false;  // direct get (the gap fill's fast path)
  std::uint64_t first_sequence = 0;
  std::uint64_t last_sequence = 0;
};

// Looks the stream up and creates it from the flags if it does not exist.
// Throws Error(kConflict) if it exists with a configuration that conflicts
// with the flags given (or does not take the subject), Error(kUnreachable)
// if JetStream does not answer within the connect timeout.
StreamState EnsureStream(Connection const& connection, StreamFlags const& flags, double timeout_seconds);

// The stream's current first and last sequence (0, 0 if it cannot be asked now).
StreamState LookStream(Connection const& connection, std::string const& stream);

// Milliseconds from seconds, at least 1.
std::int64_t Millis(double seconds);

}  // namespace circbuf::tool::bridge
