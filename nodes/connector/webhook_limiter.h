// Per-webhook bounds on one connector node, so that one receiver that is slow or down cannot
// take every sending slot, or every open event of a partition, from the other webhooks.
//
// Two counts per webhook (key: "<tenant>/<webhook_id>"):
//   open     deliveries started and not ended (sending, waiting for a slot, or waiting to be
//            retried). At `open_max`, try_open() refuses: the caller ends that delivery at once
//            (the dispatcher records it `failed`, "shed"), so one dead endpoint holds at most
//            `open_max` events open and the outbox keeps flowing for everyone else.
//   sending  attempts under way (URL check and POST). At `sending_max`, send() queues the
//            attempt in the webhook's FIFO, and sent() hands the freed slot to the oldest one.
//            Each open delivery has at most one attempt queued, so a FIFO never holds more than
//            `open_max` entries.
//
// Pure: no clock, no I/O, no threads. Not thread-safe: the dispatcher's thread owns it.
// Contract: every try_open() that returned true ends in one close(); every attempt send() took
// a slot for (ran at once, or returned later by sent()) ends in one sent().
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>

namespace chat4all::connector {

class WebhookLimiter {
 public:
  using Start = std::function<void()>;

  // Bounds of 0 act as 1.
  WebhookLimiter(std::uint32_t open_max, std::uint32_t sending_max);

  // A new delivery for `webhook`; false (and nothing counted) at open_max.
  bool try_open(const std::string& webhook);
  // The delivery ended (delivered, failed or abandoned).
  void close(const std::string& webhook);

  // Takes a sending slot and runs `start` now if one is free (true); otherwise queues `start`
  // (false), to be returned by sent() when a slot frees.
  bool send(const std::string& webhook, Start start);
  // The attempt ended and frees its slot. When an attempt was waiting, the slot passes to it and
  // it is returned for the caller to run (from its loop, not from inside this call's caller).
  Start sent(const std::string& webhook);

  std::uint32_t open(const std::string& webhook) const;
  std::uint32_t sending(const std::string& webhook) const;
  std::size_t waiting(const std::string& webhook) const;
  std::size_t webhooks() const { return load_.size(); }  // with anything open or sending

 private:
  struct Load {
    std::uint32_t open = 0;
    std::uint32_t sending = 0;
    std::deque<Start> waiting;
  };
  void forget_if_idle(std::map<std::string, Load>::iterator it);

  const std::uint32_t open_max_;
  const std::uint32_t sending_max_;
  std::map<std::string, Load> load_;
};

}  // namespace chat4all::connector
