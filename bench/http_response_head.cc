#include "bench/http_response_head.h"

#include <cctype>

#include "bench/http_client.h"

namespace chat4all::bench {

namespace {

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;  // b is lower case
  return true;
}

bool contains_ignoring_case(std::string_view haystack, std::string_view needle) {
  for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i)
    if (equals_ignoring_case(haystack.substr(i, needle.size()), needle)) return true;
  return false;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

ResponseHead parse_response_head(std::string_view data) {
  ResponseHead head;
  const auto end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) return head;
  head.state = ResponseHead::State::kBad;
  head.head_bytes = end + 4;
  const std::string_view lines = data.substr(0, end);
  // "HTTP/1.1 202 Accepted"
  if (lines.size() < 12 || lines.substr(0, 7) != "HTTP/1." || lines[8] != ' ') return head;
  if (!parse_number<int>(lines.substr(9, 3), 100, 599, head.status)) return head;
  head.close = lines[7] == '0';  // HTTP/1.0 closes unless it says keep-alive

  bool has_length = false;
  auto line_end = lines.find("\r\n");
  while (line_end != std::string_view::npos) {
    const std::size_t start = line_end + 2;
    line_end = lines.find("\r\n", start);
    const std::string_view line = lines.substr(
        start, line_end == std::string_view::npos ? std::string_view::npos : line_end - start);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return head;
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (equals_ignoring_case(name, "content-length")) {
      if (!parse_number<std::size_t>(value, 0, kMaxContentLength, head.content_length)) return head;
      has_length = true;
    } else if (equals_ignoring_case(name, "transfer-encoding")) {
      if (!equals_ignoring_case(value, "identity")) return head;  // chunked: not expected here
    } else if (equals_ignoring_case(name, "connection")) {
      if (contains_ignoring_case(value, "close"))
        head.close = true;
      else if (contains_ignoring_case(value, "keep-alive"))
        head.close = false;
    }
  }
  const bool bodiless = head.status < 200 || head.status == 204 || head.status == 304;
  if (!has_length && !bodiless) return head;  // the body would end at close: not supported
  head.state = ResponseHead::State::kComplete;
  return head;
}

}  // namespace chat4all::bench
