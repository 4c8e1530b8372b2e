// circbuf bench --plot: one-way latency by percentile, drawn by matplotlib
// (python3) when it is installed. The data goes through a CSV file in /tmp.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench.hpp"
#include "cli.hpp"

extern char** environ;

namespace circbuf::tool {

namespace {

// Runs argv (PATH lookup) with stdout and stderr as ours; its exit status, or -1.
int Spawn(std::vector<std::string> const& args, bool quiet) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  // posix_spawnp takes char* const[] for C compatibility and never writes through it.
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
  for (auto const& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (quiet) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  }
  pid_t pid = 0;
  int const error = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

constexpr char const* kScript = R"PY(
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
series = {}
for row in csv.DictReader(open(sys.argv[1])):
    series.setdefault(row["test"], ([], []))
    series[row["test"]][0].append(float(row["percentile"]))
    series[row["test"]][1].append(float(row["one_way_ns"]))
fig, ax = plt.subplots(figsize=(8, 4.5))
for name, (p, ns) in series.items():
    ax.plot(p, ns, label=name)
ax.set_xscale("logit")
ax.set_yscale("log")
ax.set_xlabel("quantile of round trips")
ax.set_ylabel("one-way latency (RTT / 2), ns")
ax.set_title("circbuf bench: cross-process latency")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=120)
)PY";

}  // namespace

std::string PlottingPython() {
  for (char const* python : {"python3", "/usr/bin/python3"}) {
    if (Spawn({python, "-c", "import matplotlib"}, true) == 0) return python;
  }
  return "";
}

void Plot(std::string const& python, std::vector<LatencyResult> const& results, std::string const& png) {
  char path[] = "/tmp/circbuf-bench-XXXXXX.csv";
  int const fd = ::mkstemps(path, 4);
  if (fd < 0) throw Error(kSystem, "cannot create a temporary CSV file in /tmp");
  FILE* csv = ::fdopen(fd, "w");
  std::fprintf(csv, "test,percentile,one_way_ns\n");
  static constexpr double kPercentiles[] = {0.01, 0.05, 0.1, 0.2,  0.3,  0.4,   0.5,   0.6,
                                            0.7,  0.8,  0.9, 0.95, 0.99, 0.995, 0.999, 0.9999};
  for (auto const& r : results) {
    for (double const p : kPercentiles) {
      std::fprintf(csv, "%s,%g,%llu\n", r.name.c_str(), p,
                   static_cast<unsigned long long>(r.histogram->Quantile(p) / 2));
    }
  }
  std::fclose(csv);
  int const status = Spawn({python, "-c", kScript, path, png}, false);
  ::unlink(path);
  if (status != 0) throw Error(kSystem, "plotting failed (python3 exited with " + std::to_string(status) + ")");
}

}  // namespace circbuf::tool
