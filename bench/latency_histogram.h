// The load generator's latency histogram: recording is allocation-free and constant time, so it
// can sit on the hot path of every answer.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace chat4all::bench {

// Log-linear, like HdrHistogram: exact below 2048 ns, then 1024 linear buckets per power of
// two, so any recorded value is off by less than 0.1% (three significant digits and more).
// Fixed size (~300 KiB), so recording never allocates.
class LatencyHistogram {
 public:
  LatencyHistogram() : counts_(kBucketCount, 0) {}

  void record(std::int64_t nanoseconds) {
    const std::uint64_t value = nanoseconds < 0 ? 0 : static_cast<std::uint64_t>(nanoseconds);
    ++counts_[bucket_of(value)];
    ++total_;
    sum_ += static_cast<double>(value);
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
  }

  void merge(const LatencyHistogram& other) {
    for (std::size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  std::uint64_t count() const { return total_; }
  std::uint64_t min() const { return total_ == 0 ? 0 : min_; }
  std::uint64_t max() const { return max_; }
  double mean() const { return total_ == 0 ? 0 : sum_ / static_cast<double>(total_); }

  // The smallest recorded value (to bucket precision) that at least `quantile` of all values
  // are at or below.
  std::uint64_t value_at(double quantile) const {
    if (total_ == 0) return 0;
    const auto rank = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::ceil(quantile * static_cast<double>(total_))));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBucketCount; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::clamp(bucket_middle(i), min_, max_);
    }
    return max_;
  }

 private:
  static constexpr int kSubBucketBits = 10;
  static constexpr std::uint64_t kSubBuckets = 1 << kSubBucketBits;
  static constexpr int kMaxShift = 36;  // top bucket starts near 2^47 ns, about 39 hours
  static constexpr std::size_t kBucketCount = (kMaxShift + 2) * kSubBuckets;

  static std::size_t bucket_of(std::uint64_t value) {
    if (value < 2 * kSubBuckets) return value;
    const int shift = std::bit_width(value) - (kSubBucketBits + 1);  // value >> shift: [1024, 2048)
    if (shift > kMaxShift) return kBucketCount - 1;
    return static_cast<std::size_t>(shift) * kSubBuckets + (value >> shift);
  }

  static std::uint64_t bucket_middle(std::size_t bucket) {
    if (bucket < 2 * kSubBuckets) return bucket;
    const std::size_t shift = bucket / kSubBuckets - 1;
    const std::uint64_t low = (bucket - shift * kSubBuckets) << shift;
    return low + ((std::uint64_t{1} << shift) - 1) / 2;
  }

  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  double sum_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
};

}  // namespace chat4all::bench
