// The frontend's ear on the storage leaders' change hints: one ZMQ SUB socket
// connected to the "events" endpoint of every storage node, on its own
// thread, dispatching each [topic][Event frame] to the listeners registered
// for exactly that topic (ZeroMQ filters by prefix; the exact match is here).
//
// Hints are only a reason to read sooner: PUB drops at its high-water mark
// and a node that restarts misses what was published meanwhile, so listeners
// never depend on them for correctness (stream sessions also resync by
// cursor, see stream_session.h).
//
// Threading: subscribe()/unsubscribe() from any thread. on_event() of a
// listener runs on the subscriber's thread and must be quick (post the work
// to the listener's own executor). A listener is held by weak_ptr: one that
// is gone is skipped, and the subscriber never keeps it alive beyond one
// dispatch. The socket is subscribed to a topic while at least one listener
// wants it and unsubscribed when the last one goes.
//
// Bounds: the SUB socket's receive queue (kReceiveQueueMessagesMax; ZeroMQ
// drops beyond it: hints only); the registry holds one entry per
// (topic, listener) pair, i.e. what the open sessions asked for.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/json_log.h"
#include "common/metrics.h"
#include "schema/wire.h"

namespace chat4all::frontend {

class EventListener {
 public:
  virtual ~EventListener() = default;
  // On the subscriber's thread; must not block.
  virtual void on_event(const wire::Event& event) = 0;
};

class EventSubscriber {
 public:
  // Connects to every address in `event_addresses` ("tcp://host:port") and
  // starts the thread. `hints` counts every event received.
  EventSubscriber(std::vector<std::string> event_addresses, Counter& hints);
  ~EventSubscriber();  // stop()
  EventSubscriber(const EventSubscriber&) = delete;
  EventSubscriber& operator=(const EventSubscriber&) = delete;

  // Stops and joins the thread; no on_event() runs after it returns. The
  // registry stays usable (listeners may still unsubscribe). Idempotent.
  void stop();

  void subscribe(const std::string& topic, const std::shared_ptr<EventListener>& listener);
  void unsubscribe(const std::string& topic, const EventListener* listener);

  // Topics with at least one listener (for tests and diagnostics).
  std::size_t topic_count() const;

  static constexpr int kReceiveQueueMessagesMax = 100000;

 private:
  struct Registration {
    const EventListener* identity;
    std::weak_ptr<EventListener> listener;
  };
  void run();
  void wake();

  std::vector<std::string> event_addresses_;
  Counter& hints_;
  int wake_fd_ = -1;  // eventfd: subscription changes and stop -> subscriber thread
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::vector<Registration>> listeners_;  // guarded by mutex_
  std::set<std::string> changed_topics_;  // guarded: topics whose socket subscription may change

  Log log_{"event_subscriber"};
  std::thread thread_;
};

// The topic of membership changes of one user: "user:<tenant>:<user_id>".
std::string user_topic(const std::string& tenant_id, const std::string& user_id);

}  // namespace chat4all::frontend
