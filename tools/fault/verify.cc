#include "tools/fault/verify.h"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace chat4all::fault {

namespace {

std::vector<std::string_view> split_tabs(std::string_view line) {
  std::vector<std::string_view> fields;
  while (true) {
    const auto tab = line.find('\t');
    fields.push_back(line.substr(0, tab));
    if (tab == std::string_view::npos) return fields;
    line.remove_prefix(tab + 1);
  }
}

bool parse_u64(std::string_view text, std::uint64_t& out) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out);
  return error == std::errc() && end == text.data() + text.size();
}

struct Copy {
  std::string_view conversation_id;
  std::uint64_t seq = 0;
};

class Problems {
 public:
  Problems(std::vector<std::string>& out, std::size_t max) : out_(out), max_(max) {}
  void add(const std::string& problem) {
    if (out_.size() < max_) out_.push_back(problem);
  }

 private:
  std::vector<std::string>& out_;
  std::size_t max_;
};

}  // namespace

std::optional<std::vector<AckRecord>> parse_ack_log(std::istream& in, std::string& error) {
  std::vector<AckRecord> records;
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line.front() == '#') continue;
    const auto fields = split_tabs(line);
    AckRecord record;
    std::uint64_t attempts = 0;
    const bool ok = fields.size() == 8 && !fields[0].empty() &&
                    parse_u64(fields[1], record.index) && !fields[2].empty() &&
                    !fields[3].empty() && (fields[4] == "ack" || fields[4] == "unknown") &&
                    parse_u64(fields[5], record.seq) && parse_u64(fields[6], attempts);
    if (!ok) {
      error = "line " + std::to_string(number) + ": not an ack log record: " + line;
      return std::nullopt;
    }
    record.session = fields[0];
    record.conversation_id = fields[2];
    record.message_id = fields[3];
    record.acknowledged = fields[4] == "ack";
    records.push_back(std::move(record));
  }
  if (in.bad()) {
    error = "read error";
    return std::nullopt;
  }
  return records;
}

Report verify(const std::vector<AckRecord>& log, const std::map<std::string, History>& histories,
              std::size_t max_problems) {
  Report report;
  Problems problems(report.problems, max_problems);

  // Where every message id is stored, and whether each history is a gap-free 1, 2, 3, ...
  std::unordered_map<std::string_view, std::vector<Copy>> copies;
  for (const auto& [conversation_id, history] : histories) {
    ++report.conversations;
    std::uint64_t expected = std::max<std::uint64_t>(history.first_seq, 1);
    for (const auto& message : history.messages) {
      ++report.stored;
      copies[message.message_id].push_back({conversation_id, message.seq});
      // A jump is retention only if it lands where history started by the last page.
      const bool expired_between = message.seq > expected && message.seq <= history.first_seq_end;
      if (message.seq != expected && !expired_between) {
        ++report.gaps;
        problems.add("gap: conversation " + conversation_id + " has seq " +
                     std::to_string(message.seq) + " where " + std::to_string(expected) +
                     " was due");
      }
      expected = message.seq + 1;
    }
    // A history that stops short of the newest seq the server itself reports is missing its
    // tail, which no per-message check would notice.
    expected = std::max(expected, history.first_seq_end);
    if (history.last_seq >= expected) {
      ++report.gaps;
      problems.add("gap: conversation " + conversation_id + " ends at seq " +
                   std::to_string(expected - 1) + " but reports last_seq " +
                   std::to_string(history.last_seq));
    }
  }

  std::set<std::string_view> unreadable;
  std::set<std::string_view> logged;
  for (const auto& record : log) {
    logged.insert(record.message_id);
    if (!histories.contains(record.conversation_id) &&
        unreadable.insert(record.conversation_id).second) {
      ++report.unreadable;
      problems.add("unreadable: no history for conversation " + record.conversation_id);
    }
  }
  for (const auto& [message_id, where] : copies)
    if (!logged.contains(message_id)) report.foreign += where.size();

  // Per (session, conversation): the seq of the last acknowledged message found there.
  std::map<std::pair<std::string_view, std::string_view>, std::pair<std::uint64_t, std::uint64_t>>
      last_acknowledged;  // -> (seq, index)
  std::vector<const AckRecord*> in_order;
  in_order.reserve(log.size());
  for (const auto& record : log) in_order.push_back(&record);
  std::stable_sort(in_order.begin(), in_order.end(), [](const AckRecord* a, const AckRecord* b) {
    return std::tie(a->session, a->index) < std::tie(b->session, b->index);
  });

  for (const AckRecord* record : in_order) {
    ++report.sent;
    ++(record->acknowledged ? report.acknowledged : report.unknown);
    std::vector<std::uint64_t> here;  // seqs of its copies in its own conversation
    if (const auto it = copies.find(record->message_id); it != copies.end()) {
      for (const Copy& copy : it->second) {
        if (copy.conversation_id == record->conversation_id) {
          here.push_back(copy.seq);
        } else {
          ++report.misplaced;
          problems.add("misplaced: message " + record->message_id + " sent to " +
                       record->conversation_id + " is stored in " +
                       std::string(copy.conversation_id) + " at seq " + std::to_string(copy.seq));
        }
      }
    }
    if (here.size() > 1) {
      report.duplicated += here.size() - 1;
      std::string seqs;
      for (auto seq : here) seqs += (seqs.empty() ? "" : ", ") + std::to_string(seq);
      problems.add("duplicated: message " + record->message_id + " is stored " +
                   std::to_string(here.size()) + " times in " + record->conversation_id + " (seq " +
                   seqs + ")");
    }
    if (!record->acknowledged) {
      if (!here.empty()) ++report.unknown_found;
      continue;
    }
    if (unreadable.contains(record->conversation_id)) continue;  // already a failure
    if (here.empty()) {
      // Expired by the rule (below where its conversation's history starts) is not lost.
      const auto history = histories.find(record->conversation_id);
      if (record->seq != 0 && history != histories.end() &&
          record->seq < history->second.first_seq_end) {
        ++report.expired;
        continue;
      }
      ++report.lost;
      problems.add("lost: message " + record->message_id + " acknowledged at seq " +
                   std::to_string(record->seq) + " is not in " + record->conversation_id);
      continue;
    }
    ++report.found;
    const std::uint64_t stored_seq = here.front();
    if (record->seq != 0 && stored_seq != record->seq) {
      ++report.wrong_seq;
      problems.add("wrong seq: message " + record->message_id + " acknowledged at seq " +
                   std::to_string(record->seq) + " is stored at seq " + std::to_string(stored_seq) +
                   " in " + record->conversation_id);
    }
    const auto key = std::make_pair(std::string_view(record->session),
                                    std::string_view(record->conversation_id));
    if (const auto previous = last_acknowledged.find(key);
        previous != last_acknowledged.end() && stored_seq <= previous->second.first) {
      ++report.out_of_order;
      problems.add("out of order: session " + record->session + " had message " +
                   record->message_id + " acknowledged after its message #" +
                   std::to_string(previous->second.second) + ", but it is stored at seq " +
                   std::to_string(stored_seq) + ", before seq " +
                   std::to_string(previous->second.first) + " in " + record->conversation_id);
    }
    last_acknowledged[key] = {stored_seq, record->index};
  }
  return report;
}

namespace {

std::vector<std::pair<const char*, std::uint64_t>> counts(const Report& report) {
  return {{"sent", report.sent},
          {"acknowledged", report.acknowledged},
          {"unknown", report.unknown},
          {"found", report.found},
          {"lost", report.lost},
          {"expired", report.expired},
          {"duplicated", report.duplicated},
          {"out_of_order", report.out_of_order},
          {"gaps", report.gaps},
          {"wrong_seq", report.wrong_seq},
          {"misplaced", report.misplaced},
          {"unreadable", report.unreadable},
          {"unknown_found", report.unknown_found},
          {"foreign", report.foreign},
          {"conversations", report.conversations},
          {"stored", report.stored}};
}

}  // namespace

std::string summary_line(const Report& report) {
  std::ostringstream out;
  for (const auto& [name, value] : counts(report))
    out << (out.tellp() > 0 ? " " : "") << name << '=' << value;
  out << " result=" << (report.ok() ? "ok" : "FAILED");
  return out.str();
}

std::string summary_json(const Report& report) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  for (const auto& [name, value] : counts(report)) json[name] = value;
  json["ok"] = report.ok();
  json["problems"] = report.problems;
  return json.dump();
}

}  // namespace chat4all::fault
