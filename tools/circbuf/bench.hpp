// circbuf bench: what the run and the plot share.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cli.hpp"

namespace circbuf::tool {

// Round trips of one latency test (RTT in ns; one-way is RTT / 2).
struct LatencyResult {
  std::string name;
  std::unique_ptr<Histogram> histogram = std::make_unique<Histogram>();
};

// A python3 that can import matplotlib ("python3" on PATH, else the
// system's /usr/bin/python3, which a pyenv or venv on PATH may hide); "" if none.
std::string PlottingPython();
// Writes a PNG of one-way latency by percentile with that python3.
void Plot(std::string const& python, std::vector<LatencyResult> const& results, std::string const& png);

}  // namespace circbuf::tool
