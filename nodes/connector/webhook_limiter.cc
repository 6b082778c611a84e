#include "nodes/connector/webhook_limiter.h"

#include <algorithm>
#include <cassert>

namespace chat4all::connector {

WebhookLimiter::WebhookLimiter(std::uint32_t open_max, std::uint32_t sending_max)
    : open_max_(std::max<std::uint32_t>(open_max, 1)),
      sending_max_(std::max<std::uint32_t>(sending_max, 1)) {}

bool WebhookLimiter::try_open(const std::string& webhook) {
  Load& load = load_[webhook];
  if (load.open >= open_max_) {
    forget_if_idle(load_.find(webhook));
    return false;
  }
  ++load.open;
  return true;
}

void WebhookLimiter::close(const std::string& webhook) {
  auto it = load_.find(webhook);
  assert(it != load_.end() && it->second.open > 0);
  if (it == load_.end() || it->second.open == 0) return;
  --it->second.open;
  forget_if_idle(it);
}

bool WebhookLimiter::send(const std::string& webhook, Start start) {
  Load& load = load_[webhook];
  if (load.sending >= sending_max_) {
    // At most one queued attempt per open delivery.
    assert(load.waiting.size() < load.open);
    load.waiting.push_back(std::move(start));
    return false;
  }
  ++load.sending;
  start();
  return true;
}

WebhookLimiter::Start WebhookLimiter::sent(const std::string& webhook) {
  auto it = load_.find(webhook);
  assert(it != load_.end() && it->second.sending > 0);
  if (it == load_.end() || it->second.sending == 0) return {};
  Load& load = it->second;
  if (!load.waiting.empty()) {
    Start next = std::move(load.waiting.front());
    load.waiting.pop_front();
    return next;  // the slot passes to it: `sending` stays
  }
  --load.sending;
  forget_if_idle(it);
  return {};
}

std::uint32_t WebhookLimiter::open(const std::string& webhook) const {
  auto it = load_.find(webhook);
  return it == load_.end() ? 0 : it->second.open;
}

std::uint32_t WebhookLimiter::sending(const std::string& webhook) const {
  auto it = load_.find(webhook);
  return it == load_.end() ? 0 : it->second.sending;
}

std::size_t WebhookLimiter::waiting(const std::string& webhook) const {
  auto it = load_.find(webhook);
  return it == load_.end() ? 0 : it->second.waiting.size();
}

void WebhookLimiter::forget_if_idle(std::map<std::string, Load>::iterator it) {
  if (it != load_.end() && it->second.open == 0 && it->second.sending == 0 &&
      it->second.waiting.empty())
    load_.erase(it);
}

}  // namespace chat4all::connector
