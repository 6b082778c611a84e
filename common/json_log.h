// Structured logging: one JSON object per line on stderr,
//   {"ts":…,"level":…,"node":…,"module":…,"event":…, <fields>}
// One Log per module; fields carry trace_id / message_id where there is one.
// Thread-safe (spdlog's mutex sink). State changes at info, rejections at
// debug; nothing per message at info on the hot path.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace chat4all {

// Sets the node name stamped on every line and the minimum level
// ("debug", "info", ...; CHAT4ALL_LOG_LEVEL overrides). Call once at start.
void init_logging(const std::string& node_name, const std::string& level = "info");

class Log {
 public:
  explicit Log(const std::string& module);

  void debug(std::string_view event,
             const nlohmann::json& fields = nlohmann::json::object()) const {
    write(spdlog::level::debug, event, fields);
  }
  void info(std::string_view event, const nlohmann::json& fields = nlohmann::json::object()) const {
    write(spdlog::level::info, event, fields);
  }
  void warn(std::string_view event, const nlohmann::json& fields = nlohmann::json::object()) const {
    write(spdlog::level::warn, event, fields);
  }
  void error(std::string_view event,
             const nlohmann::json& fields = nlohmann::json::object()) const {
    write(spdlog::level::err, event, fields);
  }
  bool enabled(spdlog::level::level_enum level) const { return logger_->should_log(level); }

 private:
  void write(spdlog::level::level_enum level, std::string_view event,
             const nlohmann::json& fields) const;
  std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace chat4all
