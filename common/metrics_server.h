// Serves GET /metrics (Prometheus text format) on its own thread for nodes
// that have no HTTP server of their own (router, storage). Connections are
// few and short (a scraper), so each request is answered and closed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "common/metrics.h"

namespace chat4all {

class MetricsServer {
 public:
  MetricsServer(MetricsRegistry& registry, const std::string& host, std::uint16_t port);
  ~MetricsServer();  // stops and joins
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chat4all
