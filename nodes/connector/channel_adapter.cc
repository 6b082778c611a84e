#include "nodes/connector/channel_adapter.h"

#include <cctype>
#include <cstdlib>
#include <mutex>

namespace chat4all::connector {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, AdapterFactory> factories;
};

// Built on first use: adapters register from static initialisers, in any order.
Registry& registry() {
  static Registry instance;
  return instance;
}

std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(text[i + 1]) &&
               std::isxdigit(text[i + 2])) {
      out +=
          static_cast<char>(std::strtol(std::string(text.substr(i + 1, 2)).c_str(), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace

std::string WebhookRequest::header(const std::string& lower_case_name) const {
  auto it = headers.find(lower_case_name);
  return it == headers.end() ? std::string() : it->second;
}

std::string WebhookRequest::query_parameter(const std::string& name) const {
  const auto question = target.find('?');
  if (question == std::string::npos) return {};
  std::string_view query(target);
  query.remove_prefix(question + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const auto equals = pair.find('=');
    if (percent_decode(pair.substr(0, equals)) == name)
      return equals == std::string_view::npos ? std::string()
                                              : percent_decode(pair.substr(equals + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

bool register_adapter(const std::string& type, AdapterFactory factory) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  if (!r.factories.emplace(type, std::move(factory)).second)
    throw std::logic_error("channel adapter type '" + type + "' is registered twice");
  return true;
}

std::unique_ptr<ChannelAdapter> make_adapter(const ChannelSpec& channel) {
  AdapterFactory factory;
  {
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.factories.find(channel.adapter);
    if (it == r.factories.end()) {
      std::string known;
      for (const auto& [type, unused] : r.factories) known += (known.empty() ? "" : ", ") + type;
      throw AdapterConfigError("channel '" + channel.name + "': no adapter of type '" +
                               channel.adapter + "' (this build has: " + known + ")");
    }
    factory = it->second;
  }
  return factory(channel);
}

std::vector<std::string> registered_adapter_types() {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> types;
  for (const auto& [type, unused] : r.factories) types.push_back(type);
  return types;
}

std::string setting(const ChannelSpec& channel, const std::string& key) {
  auto it = channel.settings.find(key);
  if (it == channel.settings.end() || it->second.empty())
    throw AdapterConfigError("channel '" + channel.name + "' (line " +
                             std::to_string(channel.line) + "): settings." + key +
                             " is required by the " + channel.adapter + " adapter");
  return it->second;
}

std::string setting_or(const ChannelSpec& channel, const std::string& key,
                       const std::string& fallback) {
  auto it = channel.settings.find(key);
  return it == channel.settings.end() ? fallback : it->second;
}

long setting_number_or(const ChannelSpec& channel, const std::string& key, long fallback) {
  auto it = channel.settings.find(key);
  if (it == channel.settings.end()) return fallback;
  char* end = nullptr;
  const long value = std::strtol(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0')
    throw AdapterConfigError("channel '" + channel.name + "': settings." + key +
                             " must be a whole number, not '" + it->second + "'");
  return value;
}

}  // namespace chat4all::connector
