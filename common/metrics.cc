#include "common/metrics.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <set>
#include <sstream>

namespace chat4all {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)),
      buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double value) {
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  buckets_[static_cast<std::size_t>(it - bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  // Clamped: converting a double beyond uint64's range is undefined.
  sum_micros_.fetch_add(static_cast<std::uint64_t>(std::clamp(value, 0.0, 1e12) * 1e6),
                        std::memory_order_relaxed);
}

MetricsRegistry::Entry* MetricsRegistry::find(const std::string& name, const std::string& labels) {
  for (auto& entry : entries_)
    if (entry.name == name && entry.labels == labels) return &entry;
  return nullptr;
}

Counter& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                  const std::string& labels) {
  std::lock_guard lock(mutex_);
  if (auto* entry = find(name, labels); entry && entry->counter) return *entry->counter;
  Counter& created = counters_.emplace_back();
  entries_.push_back({name, help, labels, "counter", &created, nullptr, nullptr});
  return created;
}

Gauge& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                              const std::string& labels) {
  std::lock_guard lock(mutex_);
  if (auto* entry = find(name, labels); entry && entry->gauge) return *entry->gauge;
  Gauge& created = gauges_.emplace_back();
  entries_.push_back({name, help, labels, "gauge", nullptr, &created, nullptr});
  return created;
}

FractionGauge& MetricsRegistry::fraction_gauge(const std::string& name, const std::string& help,
                                               const std::string& labels) {
  std::lock_guard lock(mutex_);
  if (auto* entry = find(name, labels); entry && entry->fraction_gauge)
    return *entry->fraction_gauge;
  FractionGauge& created = fraction_gauges_.emplace_back();
  Entry& entry = entries_.emplace_back(Entry{name, help, labels, "gauge"});
  entry.fraction_gauge = &created;
  return created;
}

Histogram& MetricsRegistry::latency_histogram(const std::string& name, const std::string& help,
                                              const std::string& labels) {
  std::lock_guard lock(mutex_);
  if (auto* entry = find(name, labels); entry && entry->histogram) return *entry->histogram;
  Histogram& created = histograms_.emplace_back(
      std::vector<double>{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                          0.25, 0.5, 1, 2.5, 5, 10});
  entries_.push_back({name, help, labels, "histogram", nullptr, nullptr, &created});
  return created;
}

std::string MetricsRegistry::render() const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  std::set<std::string> described;
  auto with_labels = [](const std::string& labels, const std::string& extra = "") {
    std::string all = labels;
    if (!extra.empty()) all += (all.empty() ? "" : ",") + extra;
    return all.empty() ? std::string() : "{" + all + "}";
  };
  // Prometheus wants every series of one metric name together.
  std::vector<const Entry*> ordered;
  for (const auto& entry : entries_) ordered.push_back(&entry);
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const Entry* a, const Entry* b) { return a->name < b->name; });
  for (const Entry* entry_pointer : ordered) {
    const Entry& entry = *entry_pointer;
    if (described.insert(entry.name).second) {
      out << "# HELP " << entry.name << " " << entry.help << "\n";
      out << "# TYPE " << entry.name << " " << entry.type << "\n";
    }
    if (entry.counter) {
      out << entry.name << with_labels(entry.labels) << " " << entry.counter->value() << "\n";
    } else if (entry.gauge) {
      out << entry.name << with_labels(entry.labels) << " " << entry.gauge->value() << "\n";
    } else if (entry.fraction_gauge) {
      char value[32];
      std::snprintf(value, sizeof value, "%.6g", entry.fraction_gauge->value());
      out << entry.name << with_labels(entry.labels) << " " << value << "\n";
    } else if (entry.histogram) {
      const Histogram& h = *entry.histogram;
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < h.upper_bounds().size(); ++i) {
        cumulative += h.bucket_count(i);
        char bound[32];
        std::snprintf(bound, sizeof bound, "%g", h.upper_bounds()[i]);
        out << entry.name << "_bucket"
            << with_labels(entry.labels, "le=\"" + std::string(bound) + "\"") << " " << cumulative
            << "\n";
      }
      cumulative += h.bucket_count(h.upper_bounds().size());
      out << entry.name << "_bucket" << with_labels(entry.labels, "le=\"+Inf\"") << " "
          << cumulative << "\n";
      out << entry.name << "_sum" << with_labels(entry.labels) << " " << h.sum() << "\n";
      out << entry.name << "_count" << with_labels(entry.labels) << " " << h.count() << "\n";
    }
  }
  return out.str();
}

MetricsRegistry& metrics() {
  static MetricsRegistry registry;
  return registry;
}

}  // namespace chat4all
