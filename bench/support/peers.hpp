// Peers from Debian's packages, measured by the same harness as circbuf:
// Boost.Interprocess message_queue and iceoryx 2.0.3. Filled in by
// peers_boost.hpp / peers_iceoryx.hpp when the build found them
// (CIRCBUF_HAVE_BOOST, CIRCBUF_HAVE_ICEORYX).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "support/harness.hpp"

namespace circbuf::bench {

struct Peer {
  std::string name;                   // e.g. "boost-mq-spin"
  std::function<Transport()> make;    // a fresh transport per benchmark run
  bool spins = true;                  // busy-polled (true) or blocking receive
};

// Every peer transport available in this build, for `payload`-byte messages.
inline std::vector<Peer> Peers(std::size_t /*payload*/) { return {}; }
// Stops anything the peers started (e.g. iceoryx's RouDi daemon).
inline void StopPeers() {}

}  // namespace circbuf::bench
