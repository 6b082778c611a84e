// Prometheus metrics: common/metrics.h.
#include "common/metrics.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace chat4all {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

bool contains_line(const std::string& text, const std::string& line) {
  for (const auto& l : lines_of(text))
    if (l == line) return true;
  return false;
}

TEST(MetricsTest, CounterRendersInTextFormat) {
  MetricsRegistry registry;
  Counter& c = registry.counter("requests_total", "Requests handled.");
  c.add();
  c.add(4);
  EXPECT_EQ(c.value(), 5u);
  EXPECT_EQ(registry.render(),
            "# HELP requests_total Requests handled.\n"
            "# TYPE requests_total counter\n"
            "requests_total 5\n");
}

TEST(MetricsTest, GaugeRendersInTextFormat) {
  MetricsRegistry registry;
  Gauge& g = registry.gauge("queue_depth", "Items waiting.", "queue=\"in\"");
  g.set(10);
  g.add(-15);
  EXPECT_EQ(g.value(), -5);
  EXPECT_EQ(registry.render(),
            "# HELP queue_depth Items waiting.\n"
            "# TYPE queue_depth gauge\n"
            "queue_depth{queue=\"in\"} -5\n");
}

TEST(MetricsTest, NewMetricsStartAtZero) {
  MetricsRegistry registry;
  registry.counter("c_total", "c");
  registry.gauge("g", "g");
  registry.latency_histogram("h_seconds", "h");
  const std::string text = registry.render();
  EXPECT_TRUE(contains_line(text, "c_total 0")) << text;
  EXPECT_TRUE(contains_line(text, "g 0")) << text;
  EXPECT_TRUE(contains_line(text, "h_seconds_count 0")) << text;
  EXPECT_TRUE(contains_line(text, "h_seconds_bucket{le=\"+Inf\"} 0")) << text;
}

TEST(MetricsTest, SameNameAndLabelsReturnTheSameObject) {
  MetricsRegistry registry;
  Counter& a = registry.counter("x_total", "x", "k=\"1\"");
  Counter& b = registry.counter("x_total", "x", "k=\"1\"");
  Counter& other = registry.counter("x_total", "x", "k=\"2\"");
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &other);
  Gauge& g1 = registry.gauge("y", "y");
  EXPECT_EQ(&g1, &registry.gauge("y", "y"));
  Histogram& h1 = registry.latency_histogram("z_seconds", "z", "op=\"read\"");
  EXPECT_EQ(&h1, &registry.latency_histogram("z_seconds", "z", "op=\"read\""));
  EXPECT_NE(&h1, &registry.latency_histogram("z_seconds", "z", "op=\"write\""));
  a.add(2);
  b.add(3);
  EXPECT_EQ(a.value(), 5u);
  // One series per name+labels in the output.
  const std::string text = registry.render();
  std::size_t series = 0;
  for (const auto& line : lines_of(text))
    if (line.rfind("x_total{k=\"1\"}", 0) == 0) ++series;
  EXPECT_EQ(series, 1u) << text;
}

TEST(MetricsTest, ReferencesStayValidWhileMoreMetricsAreCreated) {
  MetricsRegistry registry;
  Counter& first = registry.counter("first_total", "f");
  for (int i = 0; i < 1000; ++i) registry.counter("c" + std::to_string(i) + "_total", "c").add();
  first.add(7);
  EXPECT_TRUE(contains_line(registry.render(), "first_total 7"));
}

TEST(MetricsTest, SeriesOfOneNameAreGroupedUnderOneHeader) {
  MetricsRegistry registry;
  registry.counter("b_total", "B.", "code=\"1\"").add(1);
  registry.counter("a_total", "A.").add(2);
  registry.counter("b_total", "B.", "code=\"2\"").add(3);
  registry.gauge("c", "C.").set(4);
  registry.counter("b_total", "B.", "code=\"3\"").add(5);
  const std::vector<std::string> lines = lines_of(registry.render());
  // Every name's HELP/TYPE once, directly followed by all of its series.
  std::vector<std::string> names;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind("# HELP ", 0) != 0) continue;
    const std::string name = lines[i].substr(7, lines[i].find(' ', 7) - 7);
    names.push_back(name);
    ASSERT_LT(i + 1, lines.size());
    EXPECT_EQ(lines[i + 1].rfind("# TYPE " + name + " ", 0), 0u) << lines[i + 1];
  }
  EXPECT_EQ(names.size(), 3u);
  for (const auto& name : names) {
    // All lines of this name are contiguous.
    int runs = 0;
    bool in_run = false;
    for (const auto& line : lines) {
      const bool mine = line.rfind(name, 0) == 0 || line.rfind("# HELP " + name + " ", 0) == 0 ||
                        line.rfind("# TYPE " + name + " ", 0) == 0;
      if (mine && !in_run) ++runs;
      in_run = mine;
    }
    EXPECT_EQ(runs, 1) << name << " is split";
  }
  const std::string text = registry.render();
  EXPECT_TRUE(contains_line(text, "b_total{code=\"1\"} 1"));
  EXPECT_TRUE(contains_line(text, "b_total{code=\"2\"} 3"));
  EXPECT_TRUE(contains_line(text, "b_total{code=\"3\"} 5"));
  EXPECT_TRUE(contains_line(text, "a_total 2"));
  EXPECT_TRUE(contains_line(text, "c 4"));
}

TEST(MetricsTest, HistogramRendersCumulativeBuckets) {
  MetricsRegistry registry;
  Histogram& h = registry.latency_histogram("latency_seconds", "Latency.", "op=\"append\"");
  h.observe(0.0001);  // exactly on the first bound: le is inclusive
  h.observe(0.003);
  h.observe(0.003);
  h.observe(0.5);
  h.observe(20);  // above every bound
  EXPECT_EQ(h.count(), 5u);
  EXPECT_NEAR(h.sum(), 20.5061, 1e-5);

  const std::string text = registry.render();
  EXPECT_TRUE(contains_line(text, "# TYPE latency_seconds histogram")) << text;
  EXPECT_TRUE(contains_line(text, "latency_seconds_bucket{op=\"append\",le=\"0.0001\"} 1")) << text;
  EXPECT_TRUE(contains_line(text, "latency_seconds_bucket{op=\"append\",le=\"0.00025\"} 1"))
      << text;
  EXPECT_TRUE(contains_line(text, "latency_seconds_bucket{op=\"append\",le=\"0.0025\"} 1")) << text;
  EXPECT_TRUE(contains_line(text, "latency_seconds_bucket{op=\"append\",le=\"0.005\"} 3")) << text;
  EXPECT_TRUE(contains_line(text, "latency_seconds_bucket{op=\"append\",le=\"0.5\"} 4")) << text;
  EXPECT_TRUE(contains_line(text, "latency_seconds_bucket{op=\"append\",le=\"10\"} 4")) << text;
  EXPECT_TRUE(contains_line(text, "latency_seconds_bucket{op=\"append\",le=\"+Inf\"} 5")) << text;
  EXPECT_TRUE(contains_line(text, "latency_seconds_count{op=\"append\"} 5")) << text;
  // Buckets never decrease and +Inf equals the count.
  std::uint64_t previous = 0;
  int buckets = 0;
  for (const auto& line : lines_of(text)) {
    if (line.rfind("latency_seconds_bucket", 0) != 0) continue;
    const std::uint64_t value = std::stoull(line.substr(line.rfind(' ') + 1));
    EXPECT_GE(value, previous) << line;
    previous = value;
    ++buckets;
  }
  EXPECT_EQ(buckets, 17);  // 16 bounds + +Inf
  EXPECT_EQ(previous, 5u);
  // _sum is a number close to the observations' total.
  bool has_sum = false;
  for (const auto& line : lines_of(text)) {
    if (line.rfind("latency_seconds_sum{op=\"append\"} ", 0) != 0) continue;
    has_sum = true;
    EXPECT_NEAR(std::stod(line.substr(line.rfind(' ') + 1)), 20.5061, 1e-3) << line;
  }
  EXPECT_TRUE(has_sum) << text;
}

TEST(MetricsTest, UnlabelledHistogram) {
  MetricsRegistry registry;
  registry.latency_histogram("h_seconds", "H.").observe(0.01);
  const std::string text = registry.render();
  EXPECT_TRUE(contains_line(text, "h_seconds_bucket{le=\"0.01\"} 1")) << text;
  EXPECT_TRUE(contains_line(text, "h_seconds_bucket{le=\"0.005\"} 0")) << text;
  EXPECT_TRUE(contains_line(text, "h_seconds_count 1")) << text;
}

TEST(MetricsTest, HistogramWithOwnBounds) {
  Histogram h({1, 2, 5});
  h.observe(0.5);
  h.observe(1);
  h.observe(3);
  h.observe(100);
  EXPECT_EQ(h.upper_bounds().size(), 3u);
  EXPECT_EQ(h.bucket_count(0), 2u);  // <= 1
  EXPECT_EQ(h.bucket_count(1), 0u);  // (1, 2]
  EXPECT_EQ(h.bucket_count(2), 1u);  // (2, 5]
  EXPECT_EQ(h.bucket_count(3), 1u);  // overflow
  EXPECT_EQ(h.count(), 4u);
}

TEST(MetricsTest, UpdatesFromManyThreadsAreNotLost) {
  MetricsRegistry registry;
  Counter& c = registry.counter("hits_total", "h");
  Histogram& h = registry.latency_histogram("t_seconds", "t");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.add();
        h.observe(0.001);
      }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(c.value(), 40000u);
  EXPECT_EQ(h.count(), 40000u);
}

TEST(MetricsTest, ProcessRegistryIsASingleton) {
  EXPECT_EQ(&metrics(), &metrics());
  Counter& c = metrics().counter("chat4all_unit_test_probe_total", "probe");
  EXPECT_EQ(&c, &metrics().counter("chat4all_unit_test_probe_total", "probe"));
}

}  // namespace
}  // namespace chat4all
