// circbuf bridge: the options of `bridge out` and `bridge in` (command.cpp
// parses them) and the functions that run them (out.cpp, in.cpp). Plain C++:
// included before `import circbuf;` (docs/toolchain-notes.md, "Includes,
// imports and where spdlog may go", rule 1).
#pragma once

#include <cstdint>
#include <string>

#include "bridge/nats.hpp"

namespace circbuf::tool::bridge {

struct OutOptions {
  std::string ring;
  ConnectFlags connect;
  StreamFlags stream;
  std::string from = "oldest";  // oldest | latest | next; only when the stream has nothing of ours yet
  int max_pending = 4096;       // asynchronous publishes in flight at most
  double ack_wait = 5;          // seconds until an unacknowledged publish is sent again
  double wait = 0;              // seconds to wait for the ring to appear
  bool until_closed = false;    // exit once the writer closed and everything is acknowledged
  bool progress = false;
};

struct InOptions {
  std::string ring;
  ConnectFlags connect;
  StreamFlags stream;
  std::string from = "latest";  // oldest | latest | next | a stream sequence number
  std::string capacity = "1MiB";
  int batch = 256;          // messages per pull request
  double reorder_wait = 10;  // seconds a hole in the ring sequence waits for its messages
  bool progress = false;
};

int RunOut(OutOptions const& options);
int RunIn(InOptions const& options);

}  // namespace circbuf::tool::bridge
