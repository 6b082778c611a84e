// Prometheus metrics: counters, gauges and fixed-bucket histograms kept in
// atomics, rendered in the text exposition format.
//
// Metrics are created once (usually at node start) and live as long as the
// registry; the references returned stay valid. Updating is lock-free and
// safe from any thread; creation and rendering take the registry's mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace chat4all {

class Counter {
 public:
  void add(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void set(std::int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void add(std::int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

// A gauge whose value is a fraction or a quantity with a unit (a ratio,
// seconds): what an integer would round away.
class FractionGauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  const std::vector<double>& upper_bounds() const { return bounds_; }
  std::uint64_t bucket_count(std::size_t i) const {
    return buckets_[i].load(std::memory_order_relaxed);
  }
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const {
    return static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
  }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // cumulative at render time
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_micros_{0};
};

class MetricsRegistry {
 public:
  // `labels` is the Prometheus label set without braces, e.g. `status="ok"`.
  Counter& counter(const std::string& name, const std::string& help,
                   const std::string& labels = "");
  Gauge& gauge(const std::string& name, const std::string& help, const std::string& labels = "");
  FractionGauge& fraction_gauge(const std::string& name, const std::string& help,
                                const std::string& labels = "");
  // Latency histogram in seconds, buckets from 100 µs to 10 s.
  Histogram& latency_histogram(const std::string& name, const std::string& help,
                               const std::string& labels = "");

  std::string render() const;

 private:
  struct Entry {
    std::string name, help, labels, type;
    Counter* counter = nullptr;
    Gauge* gauge = nullptr;
    Histogram* histogram = nullptr;
    FractionGauge* fraction_gauge = nullptr;
  };
  Entry* find(const std::string& name, const std::string& labels);

  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
  std::deque<Counter> counters_;
  std::deque<Gauge> gauges_;
  std::deque<FractionGauge> fraction_gauges_;
  std::deque<Histogram> histograms_;
};

// The process-wide registry every node module registers into.
MetricsRegistry& metrics();

}  // namespace chat4all
