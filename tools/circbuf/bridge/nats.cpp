// circbuf bridge: the NATS connection, the stream, the checks (see nats.hpp).
#include "bridge/nats.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "bridge/log.hpp"
#include "cli.hpp"

namespace circbuf::tool::bridge {

namespace nats_impl {

std::vector<std::string> SplitServers(std::string const& text) {
  std::vector<std::string> out;
  std::string item;
  for (char const c : text + ",") {
    if (c == ',') {
      while (!item.empty() && item.back() == ' ') item.pop_back();
      if (!item.empty()) out.push_back(item);
      item.clear();
    } else if (c != ' ' || !item.empty()) {
      item += c;
    }
  }
  return out;
}

// 50 ms, 100 ms, 200 ms, ... 2 s between reconnect attempts (per server list pass).
std::int64_t ReconnectDelay(natsConnection* /*nc*/, int attempts, void* /*closure*/) {
  int const shift = std::clamp(attempts, 0, 6);
  return std::min<std::int64_t>(std::int64_t{50} << shift, 2000);
}

std::string Url(natsConnection* nc) {
  char buffer[256] = {0};
  if (natsConnection_GetConnectedUrl(nc, buffer, sizeof buffer) != NATS_OK || buffer[0] == 0) return "?";
  return buffer;
}

// Set before the process closes its connections: the client calls the
// disconnected callback on its own thread, possibly after the Connection
// (and the stack frame it lived in) is gone, so the flag is not a member.
std::atomic<bool> g_closing{false};

void OnDisconnected(natsConnection* /*nc*/, void* /*closure*/) {
  if (!g_closing.load(std::memory_order_relaxed)) {
    Log().warn("disconnected from the NATS server; reconnecting");
  }
}
void OnReconnected(natsConnection* nc, void* /*closure*/) { Log().info("reconnected to {}", Url(nc)); }
void OnError(natsConnection* /*nc*/, natsSubscription* /*sub*/, natsStatus err, void* /*closure*/) {
  Log().warn("NATS: {}", natsStatus_GetText(err));
}

void Check(natsStatus s, char const* what) {
  if (s != NATS_OK) throw Error(kSystem, std::string(what) + ": " + NatsError(s));
}

bool SubjectMatches(std::string_view pattern, std::string_view subject) {
  // Token-wise: '*' matches one token, '>' the rest (one or more tokens).
  for (;;) {
    auto const pdot = pattern.find('.');
    auto const sdot = subject.find('.');
    std::string_view const ptok = pattern.substr(0, pdot);
    std::string_view const stok = subject.substr(0, sdot);
    if (ptok == ">") return !subject.empty();
    if (ptok != "*" && ptok != stok) return false;
    if (pdot == std::string_view::npos || sdot == std::string_view::npos) {
      return pdot == std::string_view::npos && sdot == std::string_view::npos;
    }
    pattern.remove_prefix(pdot + 1);
    subject.remove_prefix(sdot + 1);
  }
}

char const* StorageName(jsStorageType t) { return t == js_MemoryStorage ? "memory" : "file"; }

std::string Seconds(std::int64_t ns) {
  double const s = static_cast<double>(ns) / 1e9;
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%g s", s);
  return buffer;
}

bool Transient(natsStatus s, jsErrCode jerr) {
  return s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS || jerr == JSClusterNotAvailErr ||
         (s == NATS_ERR && jerr == 0);  // e.g. "JetStream system temporarily unavailable" without a code
}

}  // namespace nats_impl

using namespace nats_impl;

std::int64_t Millis(double seconds) { return std::max<std::int64_t>(1, std::llround(seconds * 1000)); }

std::string NatsError(natsStatus s) {
  natsStatus last = NATS_OK;
  char const* text = nats_GetLastError(&last);
  std::string out = natsStatus_GetText(s);
  if (text == nullptr || *text == 0) return out;
  std::string_view detail(text);
  // "(conn.c:2088): No server available": the client's source position is no help here.
  if (detail.starts_with("(")) {
    if (auto const end = detail.find("): "); end != std::string_view::npos) detail.remove_prefix(end + 3);
  }
  if (detail != out) out += std::string(" (") + std::string(detail) + ")";
  return out;
}

void CheckSubject(std::string const& subject) {
  auto const bad = [&](char const* why) {
    return Error(kInvalid, "subject \"" + subject + "\": " + why + " (example: quotes.eu or md.venue1.trades)");
  };
  if (subject.empty()) throw bad("empty");
  if (subject.front() == '.' || subject.back() == '.' || subject.find("..") != std::string::npos) {
    throw bad("an empty token (tokens are separated by single dots)");
  }
  for (char const c : subject) {
    auto const u = static_cast<unsigned char>(c);
    if (c == '*' || c == '>') throw bad("wildcards are not allowed: the bridge carries one subject");
    if (u <= 0x20 || u == 0x7f) throw bad("whitespace or control characters");
  }
}

void CheckStreamName(std::string const& stream) {
  auto const bad = [&](char const* why) { return Error(kInvalid, "stream name \"" + stream + "\": " + why); };
  if (stream.empty()) throw bad("empty");
  if (stream.size() > 255) throw bad("longer than 255 characters");
  for (char const c : stream) {
    auto const u = static_cast<unsigned char>(c);
    if (c == '.' || c == '*' || c == '>' || c == '/' || c == '\\' || u <= 0x20 || u == 0x7f) {
      throw bad("must not contain '.', '*', '>', '/', '\\', whitespace or control characters");
    }
  }
}

std::optional<std::uint64_t> HeaderNumber(natsMsg* msg, char const* key) {
  char const* value = nullptr;
  if (natsMsgHeader_Get(msg, key, &value) != NATS_OK || value == nullptr || *value == 0) return std::nullopt;
  std::uint64_t n = 0;
  for (char const* p = value; *p != 0; ++p) {
    if (*p < '0' || *p > '9') return std::nullopt;
    auto const digit = static_cast<std::uint64_t>(*p - '0');
    if (n > (UINT64_MAX - digit) / 10) return std::nullopt;
    n = n * 10 + digit;
  }
  return n;
}

Connection::Connection(ConnectFlags const& flags, std::string const& name, jsOptions* js_options) {
  std::vector<std::string> const servers = SplitServers(flags.servers);
  if (servers.empty()) throw Error(kInvalid, "--server \"" + flags.servers + "\": no URL (example: nats://host:4222)");
  for (auto const& s : servers) servers_text_ += (servers_text_.empty() ? "" : ",") + s;
  std::vector<char const*> urls;
  urls.reserve(servers.size());
  for (auto const& s : servers) urls.push_back(s.c_str());
  Check(natsOptions_Create(&options_), "natsOptions_Create");
  natsStatus s = natsOptions_SetServers(options_, urls.data(), static_cast<int>(urls.size()));
  if (s != NATS_OK) {
    natsOptions_Destroy(options_);
    throw Error(kInvalid, "--server \"" + flags.servers + "\": " + NatsError(s));
  }
  (void)natsOptions_SetName(options_, name.c_str());
  (void)natsOptions_SetNoRandomize(options_, true);  // the servers in the order given
  (void)natsOptions_SetTimeout(options_, Millis(flags.connect_timeout));
  (void)natsOptions_SetMaxReconnect(options_, -1);  // for ever, once connected
  (void)natsOptions_SetCustomReconnectDelay(options_, ReconnectDelay, nullptr);
  (void)natsOptions_SetReconnectBufSize(options_, 64 << 20);  // publishes while reconnecting
  (void)natsOptions_SetPingInterval(options_, 2000);           // a dead server noticed within seconds
  (void)natsOptions_SetMaxPingsOut(options_, 2);
  (void)natsOptions_SetDisconnectedCB(options_, OnDisconnected, nullptr);
  (void)natsOptions_SetReconnectedCB(options_, OnReconnected, nullptr);
  (void)natsOptions_SetErrorHandler(options_, OnError, nullptr);
  if (!flags.creds.empty()) {
    // libnats reads the file only when it connects, and then reports a
    // missing one as a failed connection: look at it first.
    if (std::FILE* f = std::fopen(flags.creds.c_str(), "r"); f != nullptr) {
      (void)std::fclose(f);
    } else {
      int const error = errno;
      natsOptions_Destroy(options_);
      options_ = nullptr;
      throw Error(kInvalid, "--creds \"" + flags.creds + "\": cannot read it: " + ErrnoText(error));
    }
    s = natsOptions_SetUserCredentialsFromFiles(options_, flags.creds.c_str(), nullptr);
    if (s != NATS_OK) {
      natsOptions_Destroy(options_);
      throw Error(kInvalid, "--creds \"" + flags.creds + "\": " + NatsError(s));
    }
  }
  s = natsConnection_Connect(&nc_, options_);
  if (s != NATS_OK) {
    std::string const why = NatsError(s);
    natsOptions_Destroy(options_);
    options_ = nullptr;
    if (s == NATS_NOT_PERMITTED || s == NATS_CONNECTION_AUTH_FAILED) {
      throw Error(kPermission, "the NATS server at " + servers_text_ + " refused the connection: " + why);
    }
    throw Error(kUnreachable, "cannot connect to the NATS server at " + servers_text_ + ": " + why);
  }
  s = natsConnection_JetStream(&js_, nc_, js_options);
  if (s != NATS_OK) {
    std::string const why = NatsError(s);
    natsConnection_Destroy(nc_);
    natsOptions_Destroy(options_);
    throw Error(kSystem, "JetStream context: " + why);
  }
  Log().info("connected to {}", Url(nc_));
}

Connection::~Connection() {
  jsCtx_Destroy(js_);
  if (nc_ != nullptr) {
    g_closing.store(true, std::memory_order_relaxed);  // no "disconnected" warning for our own close
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
  }
  natsOptions_Destroy(options_);
}

bool Connection::Connected() const noexcept { return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED; }

StreamState LookStream(Connection const& connection, std::string const& stream) {
  StreamState out;
  jsStreamInfo* si = nullptr;
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = 2000;
  if (js_GetStreamInfo(&si, connection.Js(), stream.c_str(), &o, nullptr) == NATS_OK && si != nullptr) {
    out.first_sequence = si->State.FirstSeq;
    out.last_sequence = si->State.LastSeq;
    out.allow_direct = si->Config->AllowDirect;
  }
  jsStreamInfo_Destroy(si);
  return out;
}

StreamState EnsureStream(Connection const& connection, StreamFlags const& flags, double timeout_seconds) {
  std::int64_t const max_bytes =
      flags.max_bytes == "0" || flags.max_bytes == "-1"
          ? -1
          : static_cast<std::int64_t>(std::min<std::uint64_t>(ParseSize(flags.max_bytes, "--max-bytes"), INT64_MAX));
  auto const max_age = static_cast<std::int64_t>(std::llround(flags.max_age * 1e9));
  auto const duplicates = static_cast<std::int64_t>(std::llround(flags.duplicate_window * 1e9));
  jsStorageType const storage = flags.storage == "memory" ? js_MemoryStorage : js_FileStorage;
  auto const deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(Millis(timeout_seconds));
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = 2000;
  std::string last_error;
  while (std::chrono::steady_clock::now() < deadline) {
    jsStreamInfo* si = nullptr;
    auto jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetStreamInfo(&si, connection.Js(), flags.stream.c_str(), &o, &jerr);
    if (s == NATS_OK) {
      jsStreamConfig const& c = *si->Config;
      std::vector<std::string> conflicts;
      bool takes_subject = false;
      std::string subjects;
      for (int i = 0; i < c.SubjectsLen; ++i) {
        takes_subject = takes_subject || SubjectMatches(c.Subjects[i], flags.subject);
        subjects += (i == 0 ? "" : " ") + std::string(c.Subjects[i]);
      }
      if (!takes_subject)
        conflicts.push_back("does not take subject " + flags.subject + " (its subjects: " + subjects + ")");
      if (c.Retention != js_LimitsPolicy)
        conflicts.emplace_back("has a work-queue or interest retention (the bridge needs limits)");
      if (flags.storage_given && c.Storage != storage) {
        conflicts.push_back(std::string("has storage ") + StorageName(c.Storage) + ", not " + flags.storage);
      }
      if (flags.replicas_given && c.Replicas != flags.replicas) {
        conflicts.push_back("has " + std::to_string(c.Replicas) + " replicas, not " + std::to_string(flags.replicas));
      }
      if (flags.max_bytes_given && c.MaxBytes != max_bytes) {
        conflicts.push_back("has max bytes " + std::to_string(c.MaxBytes) + ", not " + std::to_string(max_bytes));
      }
      if (flags.max_age_given && c.MaxAge != max_age) {
        conflicts.push_back("has max age " + Seconds(c.MaxAge) + ", not " + Seconds(max_age));
      }
      if (flags.duplicate_window_given && c.Duplicates != duplicates) {
        conflicts.push_back("has a duplicate window of " + Seconds(c.Duplicates) + ", not " + Seconds(duplicates));
      }
      StreamState out{false, c.AllowDirect, si->State.FirstSeq, si->State.LastSeq};
      jsStreamInfo_Destroy(si);
      if (!conflicts.empty()) {
        std::string text;
        for (auto const& x : conflicts) text += (text.empty() ? "" : "; ") + x;
        throw Error(kConflict, "stream " + flags.stream + " exists but " + text +
                                   " (drop or change the flags, or update the stream)");
      }
      Log().info("stream {}: {} messages (sequences {} .. {})", flags.stream,
                 out.last_sequence >= out.first_sequence && out.last_sequence != 0
                     ? out.last_sequence - out.first_sequence + 1
                     : 0,
                 out.first_sequence, out.last_sequence);
      return out;
    }
    jsStreamInfo_Destroy(si);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
      jsStreamConfig cfg;
      jsStreamConfig_Init(&cfg);
      char const* subjects[] = {flags.subject.c_str()};
      cfg.Name = flags.stream.c_str();
      cfg.Subjects = subjects;
      cfg.SubjectsLen = 1;
      cfg.Retention = js_LimitsPolicy;
      cfg.MaxBytes = max_bytes;
      cfg.MaxAge = max_age;
      cfg.Storage = storage;
      cfg.Replicas = flags.replicas;
      cfg.Duplicates = duplicates;
      cfg.Discard = js_DiscardOld;
      cfg.AllowDirect = true;
      jsStreamInfo* created = nullptr;
      jerr = static_cast<jsErrCode>(0);
      s = js_AddStream(&created, connection.Js(), &cfg, &o, &jerr);
      if (s == NATS_OK) {
        StreamState out{true, created->Config->AllowDirect, created->State.FirstSeq, created->State.LastSeq};
        jsStreamInfo_Destroy(created);
        Log().info("created stream {} (subject {}, {} storage, {} replicas, max bytes {}, max age {} s)", flags.stream,
                   flags.subject, flags.storage, flags.replicas, max_bytes, flags.max_age);
        return out;
      }
      jsStreamInfo_Destroy(created);
      if (jerr == JSStreamNameExistErr) continue;  // created meanwhile by another bridge: look again
      if (!Transient(s, jerr)) {
        throw Error(kConflict, "cannot create stream " + flags.stream + " for subject " + flags.subject + ": " +
                                   NatsError(s) + (jerr != 0 ? " [JetStream error " + std::to_string(jerr) + "]" : ""));
      }
    } else if (!Transient(s, jerr)) {
      if (jerr == JSNotEnabledErr || jerr == JSNotEnabledForAccountErr) {
        throw Error(kUnreachable, "JetStream is not enabled on " + connection.Servers() + " (nats-server -js)");
      }
      throw Error(kConflict, "stream " + flags.stream + ": " + NatsError(s) +
                                 (jerr != 0 ? " [JetStream error " + std::to_string(jerr) + "]" : ""));
    }
    last_error = NatsError(s);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // JetStream not ready yet (a cluster electing)
  }
  throw Error(kUnreachable, "JetStream at " + connection.Servers() + " did not answer about stream " + flags.stream +
                                ": " + last_error);
}

}  // namespace circbuf::tool::bridge
