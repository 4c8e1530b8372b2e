// circbuf bridge out | in: the command line (docs/bridge.md). The work is in
// out.cpp and in.cpp; nats.cpp holds what both need of NATS.
#include <string>

#include <CLI/CLI.hpp>

#include "bridge/bridge.hpp"
#include "bridge/log.hpp"
#include "cli.hpp"

namespace circbuf::tool {

namespace bridge_impl {

bridge::OutOptions g_out;
bridge::InOptions g_in;
CLI::App* g_out_app = nullptr;
CLI::App* g_in_app = nullptr;

void AddNatsFlags(CLI::App* sub, bridge::ConnectFlags& connect, bridge::StreamFlags& stream) {
  sub->add_option("--server,-s", connect.servers,
                  "NATS server URLs, comma-separated (a cluster: any of its servers; tried in this order)")
      ->capture_default_str();
  sub->add_option("--stream", stream.stream, "JetStream stream (created if missing, from the flags below)")->required();
  sub->add_option("--subject", stream.subject, "Subject the ring's messages go to (no wildcards)")->required();
  sub->add_option("--creds", connect.creds, "NATS credentials file (.creds)");
  sub->add_option("--connect-timeout", connect.connect_timeout, "Seconds to wait for a server at start-up")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  auto* bytes = sub->add_option("--max-bytes", stream.max_bytes,
                                "New stream: keep at most this many bytes (1GiB, 500MB, ...; -1: no limit)")
                    ->capture_default_str();
  auto* age = sub->add_option("--max-age", stream.max_age, "New stream: keep messages this many seconds (0: for ever)")
                  ->check(CLI::Range(0.0, 1e9))
                  ->capture_default_str();
  auto* replicas = sub->add_option("--replicas", stream.replicas, "New stream: replicas (1, or 3 on a cluster)")
                       ->check(CLI::Range(1, 5))
                       ->capture_default_str();
  auto* storage = sub->add_option("--storage", stream.storage, "New stream: file or memory storage")
                      ->check(CLI::IsMember({"file", "memory"}))
                      ->capture_default_str();
  auto* window = sub->add_option("--duplicate-window", stream.duplicate_window,
                                 "New stream: seconds within which a message id is stored once")
                     ->check(CLI::Range(0.0, 86400.0))
                     ->capture_default_str();
  // Remembered so that only flags given can conflict with an existing stream.
  sub->callback([&stream, bytes, age, replicas, storage, window] {
    stream.max_bytes_given = bytes->count() != 0;
    stream.max_age_given = age->count() != 0;
    stream.replicas_given = replicas->count() != 0;
    stream.storage_given = storage->count() != 0;
    stream.duplicate_window_given = window->count() != 0;
  });
}

int RunBridge() {
  if (g_out_app != nullptr && g_out_app->parsed()) return bridge::RunOut(g_out);
  return bridge::RunIn(g_in);
}

}  // namespace bridge_impl

using namespace bridge_impl;

Command AddBridge(CLI::App& app) {
  auto* sub = app.add_subcommand("bridge", "A ring to other hosts via NATS JetStream (out, in)");
  sub->require_subcommand(1);
  sub->footer("A ring's sequence numbers, and its readers' exact loss count, survive the hop (docs/bridge.md).");

  g_out_app = sub->add_subcommand("out", "Publish every message of a ring to a JetStream subject");
  g_out_app->add_option("ring", g_out.ring, "Ring name, e.g. /quotes")->required();
  AddNatsFlags(g_out_app, g_out.connect, g_out.stream);
  g_out_app
      ->add_option("--from", g_out.from,
                   "Where to start when the stream has nothing of this subject yet: oldest, latest, next "
                   "(otherwise it resumes after the stream's last message)")
      ->check(CLI::IsMember({"oldest", "latest", "next"}))
      ->capture_default_str();
  g_out_app->add_option("--max-pending", g_out.max_pending, "Asynchronous publishes in flight at most")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  g_out_app->add_option("--ack-wait", g_out.ack_wait, "Seconds until an unacknowledged publish is sent again")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  g_out_app->add_option("--wait", g_out.wait, "Seconds to wait for the ring to appear (default: fail at once)")
      ->check(CLI::Range(0.0, 86400.0));
  g_out_app->add_flag("--until-closed", g_out.until_closed,
                      "Exit once the ring's writer has closed (or died) and everything is acknowledged");
  g_out_app->add_flag("--progress", g_out.progress, "A line a second on stderr: rates, in flight, lag, gaps, lost");
  g_out_app->footer("A lap on the ring is published as a gap message (Circbuf-Gap: N), so remote readers count it.");

  g_in_app = sub->add_subcommand("in", "Write a JetStream subject into a local ring, as its writer");
  g_in_app->add_option("ring", g_in.ring, "Ring name, e.g. /quotes (created if missing)")->required();
  AddNatsFlags(g_in_app, g_in.connect, g_in.stream);
  g_in_app
      ->add_option("--from", g_in.from,
                   "Where to start: oldest (the stream's history), latest, next, or a stream sequence number")
      ->capture_default_str();
  g_in_app->add_option("--capacity", g_in.capacity, "Capacity of the ring if it is created (4KiB .. 50MiB)")
      ->capture_default_str();
  g_in_app->add_option("--batch", g_in.batch, "Messages per pull request")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  g_in_app
      ->add_option("--reorder-wait", g_in.reorder_wait,
                   "Seconds a hole in the ring sequence waits for its messages (bridge out sends a publish again when "
                   "its acknowledgement was lost, so they can arrive late) before it counts as lost")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  g_in_app->add_flag("--progress", g_in.progress,
                     "A line a second on stderr: rate, lag, gaps filled, lost (upstream, on the way)");
  g_in_app->footer("The ring's sequence numbers are the upstream ring's; its readers' Lost() counts what the source "
                   "ring lost plus what could not be recovered on the way. Ctrl-C ends it with exit code 0.");
  (void)bridge::Log();  // the logger exists before the client's threads log
  return {sub, RunBridge};
}

}  // namespace circbuf::tool
