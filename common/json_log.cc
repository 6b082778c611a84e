#include "common/json_log.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <cstdlib>
#include <mutex>

namespace chat4all {

namespace {

std::mutex registry_mutex;
std::string node_label = "-";
spdlog::level::level_enum minimum_level = spdlog::level::info;

std::shared_ptr<spdlog::sinks::sink> shared_sink() {
  static auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return sink;
}

std::string json_string(const std::string& text) {
  return nlohmann::json(text).dump();
}

void apply_format(spdlog::logger& logger) {
  logger.set_pattern("{\"ts\":\"%Y-%m-%dT%H:%M:%S.%fZ\",\"level\":\"%l\",\"node\":" +
                         json_string(node_label) + ",\"module\":\"%n\",%v}",
                     spdlog::pattern_time_type::utc);
  logger.set_level(minimum_level);
  logger.flush_on(spdlog::level::info);
}

}  // namespace

void init_logging(const std::string& node_name, const std::string& level) {
  std::lock_guard lock(registry_mutex);
  node_label = node_name;
  const char* from_env = std::getenv("CHAT4ALL_LOG_LEVEL");
  minimum_level = spdlog::level::from_str(from_env ? from_env : level);
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& logger) { apply_format(*logger); });
}

Log::Log(const std::string& module) {
  std::lock_guard lock(registry_mutex);
  logger_ = spdlog::get(module);
  if (!logger_) {
    logger_ = std::make_shared<spdlog::logger>(module, shared_sink());
    apply_format(*logger_);
    spdlog::register_logger(logger_);
  }
}

void Log::write(spdlog::level::level_enum level, std::string_view event,
                const nlohmann::json& fields) const {
  if (!logger_->should_log(level)) return;
  std::string line = "\"event\":" + nlohmann::json(event).dump();
  if (fields.is_object() && !fields.empty()) {
    const std::string body = fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line += "," + body.substr(1, body.size() - 2);
  }
  logger_->log(level, "{}", line);
}

}  // namespace chat4all
