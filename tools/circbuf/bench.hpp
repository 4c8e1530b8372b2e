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

bool PlottingAvailable();
// Writes a PNG of one-way latency by percentile with python3 + matplotlib.
void Plot(std::vector<LatencyResult> const& results, std::string const& png);

}  // namespace circbuf::tool
