// Peers from Debian's packages, measured by the same harness as circbuf:
// Boost.Interprocess message_queue and iceoryx 2.0.3. Filled in by
// peers_boost.hpp / peers_iceoryx.hpp when the build found them
// (CIRCBUF_HAVE_BOOST, CIRCBUF_HAVE_ICEORYX).
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "support/harness.hpp"
#if CIRCBUF_HAVE_BOOST
#include "support/peers_boost.hpp"
#endif
#if CIRCBUF_HAVE_ICEORYX
#include "support/peers_iceoryx.hpp"
#endif

namespace circbuf::bench {

struct Peer {
  std::string name;                   // e.g. "boost-mq-spin"
  std::function<Transport()> make;    // a fresh transport per benchmark run
  bool spins = true;                  // busy-polled (true) or blocking receive
};

// The echo/receiver side is made in the forked child: make that child die
// with the benchmark process, so that a benchmark killed mid-run leaves no
// process spinning (or blocked) on a peer's queue.
inline Transport EchoDiesWithParent(Transport t) {
  if (t.make_echo) {
    t.make_echo = [make = std::move(t.make_echo), parent = ::getpid()] {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);  // it died before prctl
      return make();
    };
  }
  return t;
}

// Every peer transport available in this build, for `payload`-byte messages.
// The transports are made per run (make), so nothing starts here: RouDi only
// starts when an iceoryx benchmark runs.
inline std::vector<Peer> Peers([[maybe_unused]] std::size_t payload) {
  std::vector<Peer> peers;
#if CIRCBUF_HAVE_BOOST
  for (bool const spin : {true, false}) {
    peers.push_back(
        {spin ? "boost-mq-spin" : "boost-mq",
         [spin, payload] { return EchoDiesWithParent(BoostMqTransport(spin, payload, BoostMqDepth(payload))); }, spin});
  }
#endif
#if CIRCBUF_HAVE_ICEORYX
  for (bool const spin : {true, false}) {
    peers.push_back(
        {spin ? "iceoryx-spin" : "iceoryx", [spin] { return EchoDiesWithParent(IceoryxTransport(spin)); }, spin});
  }
#endif
  return peers;
}

// Stops anything the peers started (iceoryx's RouDi daemon).
inline void StopPeers() {
#if CIRCBUF_HAVE_ICEORYX
  StopIceoryx();
#endif
}

}  // namespace circbuf::bench
