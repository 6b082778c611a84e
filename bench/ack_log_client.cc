#include "bench/ack_log_client.h"

#include <algorithm>
#include <tuple>

namespace chat4all::bench {

bool retryable_status(int status) {
  return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

std::chrono::steady_clock::duration retry_backoff(std::uint32_t attempts) {
  const int doublings = std::min<int>(attempts > 0 ? static_cast<int>(attempts) - 1 : 0, 10);
  return std::min<std::chrono::steady_clock::duration>(kFirstBackoff * (1 << doublings),
                                                       kMaxBackoff);
}

void write_ack_log(std::ostream& out, const std::string& run_id,
                   const std::vector<std::string>& conversations, std::vector<Outcome>& outcomes) {
  std::sort(outcomes.begin(), outcomes.end(), [](const Outcome& a, const Outcome& b) {
    return std::tie(a.connection, a.sequence) < std::tie(b.connection, b.sequence);
  });
  out << "# chat4all ack log v1 run=" << run_id << " conversations=" << conversations.size() << "\n"
      << "# session\tindex\tconversation_id\tmessage_id\toutcome\tseq\tattempts\tdetail\n";
  for (const auto& outcome : outcomes) {
    out << outcome.connection << '\t' << outcome.sequence << '\t'
        << conversations[outcome.conversation] << '\t' << run_id << '-' << outcome.connection << '-'
        << outcome.sequence << '\t' << (outcome.acknowledged ? "ack" : "unknown") << '\t'
        << outcome.seq << '\t' << outcome.attempts << '\t'
        << (outcome.detail.empty() ? "-" : outcome.detail) << '\n';
  }
}

}  // namespace chat4all::bench
