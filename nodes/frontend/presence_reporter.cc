#include "nodes/frontend/presence_reporter.h"

#include "common/codec.h"
#include "common/ids.h"
#include "schema/records.h"

namespace chat4all::frontend {

namespace {

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

PresenceLedger::Settings ledger_settings(const StreamSettings& settings) {
  PresenceLedger::Settings out;
  out.grace_ms = settings.presence_grace_ms;
  out.renew_ms = settings.presence_lease_ms / 3;
  out.users_per_report_max = wire::kPresenceReportUsersMax;
  return out;
}

}  // namespace

PresenceReporter::Hold& PresenceReporter::Hold::operator=(Hold&& other) noexcept {
  if (this != &other) {
    release();
    reporter_ = std::exchange(other.reporter_, nullptr);
    tenant_ = std::move(other.tenant_);
    user_ = std::move(other.user_);
  }
  return *this;
}

void PresenceReporter::Hold::release() {
  if (reporter_) std::exchange(reporter_, nullptr)->closed(tenant_, user_);
}

PresenceReporter::PresenceReporter(const StreamSettings& settings, const std::string& node_name)
    : lease_ms_(settings.presence_lease_ms),
      // A node name leaves room for the suffix within ids::kNameLengthMax.
      instance_(node_name.substr(0, ids::kNameLengthMax - 11) + "." +
                ids::new_random_id("").substr(0, 10)),
      ledger_(ledger_settings(settings)) {}

PresenceReporter::~PresenceReporter() {
  stop();
}

PresenceReporter::Hold PresenceReporter::hold(const std::string& tenant, const std::string& user) {
  {
    std::lock_guard lock(mutex_);
    ledger_.opened(tenant, user, steady_ms());
    wake_pending_ = true;
  }
  wake_.notify_one();
  return Hold(this, tenant, user);
}

void PresenceReporter::closed(const std::string& tenant, const std::string& user) {
  std::lock_guard lock(mutex_);
  ledger_.closed(tenant, user, steady_ms());
  // Nothing to send before the grace is over: the tick finds it then.
}

void PresenceReporter::start(RouterClient& routers) {
  storage_.emplace(routers);
  thread_ = std::thread([this] { run(); });
}

void PresenceReporter::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PresenceReporter::run() {
  log_.info("presence_reporting", {{"instance", instance_}, {"lease_ms", lease_ms_}});
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    send_due(lock);
    wake_.wait_for(lock, kTick, [this] { return stopping_ || wake_pending_; });
    wake_pending_ = false;
  }
  // The frontend stops: its users are offline now rather than at the lease's end.
  ledger_.close_all();
  const auto deadline = std::chrono::steady_clock::now() + kStopWait;
  while (!ledger_.idle() && std::chrono::steady_clock::now() < deadline) {
    send_due(lock);
    wake_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + kTick),
                     [this] { return wake_pending_; });
    wake_pending_ = false;
  }
  // Answers still in flight touch only the ledger (under the mutex); the
  // reporter outlives the router client's thread (stream_hub.h).
}

void PresenceReporter::send_due(std::unique_lock<std::mutex>& lock) {
  auto reports = ledger_.take_reports(steady_ms());
  if (reports.empty()) return;
  // Unlocked: a refusal at the router client's bound is answered inside submit().
  lock.unlock();
  for (auto& report : reports) {
    log_.debug("presence_report", {{"tenant_id", report.tenant_id},
                                   {"online", report.online.size()},
                                   {"offline", report.offline.size()}});
    const wire::PresenceReport body{report.tenant_id, instance_, lease_ms_, report.online,
                                    report.offline};
    // Named before the call: the callback below takes `report` by move.
    std::string key = wire::tenant_key(report.tenant_id);
    storage_->command<wire::PresenceReportResult>(
        std::move(key), wire::CommandKind::kReportPresence, body,
        [this, report = std::move(report)](StorageOutcome<wire::PresenceReportResult> outcome) {
          {
            std::lock_guard answered(mutex_);
            ledger_.on_reported(report, outcome.ok(), outcome.ok() && outcome.value->lease_was_live,
                                steady_ms());
            wake_pending_ = true;
          }
          log_.debug("presence_reported",
                     {{"tenant_id", report.tenant_id},
                      {"status", codec::status_name(outcome.status)},
                      {"detail", outcome.detail},
                      {"lease_was_live", outcome.ok() && outcome.value->lease_was_live}});
          wake_.notify_all();
        });
  }
  lock.lock();
}

}  // namespace chat4all::frontend
