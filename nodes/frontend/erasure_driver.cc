#include "nodes/frontend/erasure_driver.h"

namespace chat4all::frontend {

namespace {

std::string job_name(const std::string& tenant, const std::string& user) {
  return tenant + "/" + user;
}

}  // namespace

bool ErasureDriver::driving(const std::string& tenant, const std::string& user) const {
  std::lock_guard lock(mutex_);
  return driven_.contains(job_name(tenant, user));
}

void ErasureDriver::drive(const wire::EraseJob& job, const std::string& trace_id) {
  if (job.state != wire::kErasePending) return;
  {
    std::lock_guard lock(mutex_);
    if (driven_.size() >= kErasuresDrivenMax) return;
    if (!driven_.insert(job_name(job.tenant_id, job.user_id)).second) return;
  }
  next(job, trace_id);
}

void ErasureDriver::next(const wire::EraseJob& job, const std::string& trace_id) {
  if (job.state != wire::kErasePending || job.conversations_done >= job.conversations.size())
    return finish(job.tenant_id, job.user_id);
  Step step{job.tenant_id,
            job.user_id,
            trace_id,
            job.conversations[job.conversations_done],
            job.conversations_done,
            0};
  erase_from(std::move(step), 1);
}

void ErasureDriver::erase_from(Step step, std::uint64_t from_seq) {
  const std::string key = step.conversation;
  storage_.command<wire::EraseMessagesResult>(
      key, wire::CommandKind::kEraseMessages,
      wire::EraseMessages{step.tenant, step.conversation, step.user, from_seq},
      [this, step](StorageOutcome<wire::EraseMessagesResult> outcome) mutable {
        // A conversation gone since the job listed it has nothing left to erase.
        if (outcome.status == wire::Status::kNotFound) return record(std::move(step));
        if (!outcome.ok()) return finish(step.tenant, step.user);
        step.erased += outcome.value->erased;
        if (outcome.value->done) return record(std::move(step));
        erase_from(std::move(step), outcome.value->next_seq);
      },
      step.trace_id);
}

void ErasureDriver::record(Step step) {
  storage_.command<wire::EraseJob>(
      wire::tenant_key(step.tenant), wire::CommandKind::kEraseProgress,
      wire::EraseProgress{step.tenant, step.user, step.index, step.erased},
      [this, step](StorageOutcome<wire::EraseJob> outcome) {
        if (!outcome.ok()) return finish(step.tenant, step.user);
        next(*outcome.value, step.trace_id);
      },
      step.trace_id);
}

void ErasureDriver::finish(const std::string& tenant, const std::string& user) {
  std::lock_guard lock(mutex_);
  driven_.erase(job_name(tenant, user));
}

}  // namespace chat4all::frontend
