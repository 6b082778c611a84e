#include "nodes/frontend/event_subscriber.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <zmq.hpp>

#include "common/codec.h"
#include "common/curve.h"
#include "common/transport.h"

namespace chat4all::frontend {

std::string user_topic(const std::string& tenant_id, const std::string& user_id) {
  return "user:" + tenant_id + ":" + user_id;
}

EventSubscriber::EventSubscriber(std::vector<std::string> event_addresses, Counter& hints)
    : event_addresses_(std::move(event_addresses)), hints_(hints) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
  thread_ = std::thread([this] { run(); });
}

EventSubscriber::~EventSubscriber() {
  stop();
  ::close(wake_fd_);
}

void EventSubscriber::stop() {
  if (stopping_.exchange(true)) return;
  wake();
  thread_.join();
}

void EventSubscriber::wake() {
  const std::uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof one);
}

void EventSubscriber::subscribe(const std::string& topic,
                                const std::shared_ptr<EventListener>& listener) {
  bool first = false;
  {
    std::lock_guard lock(mutex_);
    auto& registrations = listeners_[topic];
    for (const auto& registration : registrations)
      if (registration.identity == listener.get()) return;
    registrations.push_back({listener.get(), listener});
    if (registrations.size() == 1) first = changed_topics_.insert(topic).second;
  }
  if (first) wake();
}

void EventSubscriber::unsubscribe(const std::string& topic, const EventListener* listener) {
  bool last = false;
  {
    std::lock_guard lock(mutex_);
    const auto it = listeners_.find(topic);
    if (it == listeners_.end()) return;
    std::erase_if(it->second, [&](const Registration& r) { return r.identity == listener; });
    if (it->second.empty()) {
      listeners_.erase(it);
      last = changed_topics_.insert(topic).second;
    }
  }
  if (last) wake();
}

std::size_t EventSubscriber::topic_count() const {
  std::lock_guard lock(mutex_);
  return listeners_.size();
}

void EventSubscriber::run() {
  zmq::socket_t socket(transport::context(), zmq::socket_type::sub);
  transport::configure(socket, kReceiveQueueMessagesMax);
  for (const auto& address : event_addresses_) curve::connect(socket, address);
  log_.info("started", {{"storage_nodes", event_addresses_.size()}});

  std::set<std::string> subscribed;  // what the socket is subscribed to; this thread only
  std::array<zmq::pollitem_t, 2> items{
      {{socket.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd_, ZMQ_POLLIN, 0}}};
  std::vector<std::shared_ptr<EventListener>> targets;
  while (!stopping_.load()) {
    transport::poll(items.data(), items.size(), std::chrono::milliseconds(1000));
    if (items[1].revents & ZMQ_POLLIN) {
      std::uint64_t count;
      (void)::read(wake_fd_, &count, sizeof count);
    }
    {
      std::set<std::string> changed;
      std::lock_guard lock(mutex_);
      changed.swap(changed_topics_);
      for (const auto& topic : changed) {
        const bool wanted = listeners_.contains(topic);
        if (wanted && subscribed.insert(topic).second) {
          socket.set(zmq::sockopt::subscribe, topic);
        } else if (!wanted && subscribed.erase(topic) > 0) {
          socket.set(zmq::sockopt::unsubscribe, topic);
        }
      }
    }
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    // A bounded batch per turn, so that subscription changes and stop are seen.
    for (int drained = 0; drained < 4096; ++drained) {
      auto frames = transport::receive_multipart(socket);
      if (frames.empty()) break;
      std::string why = "expected [topic][event]";
      std::optional<wire::Event> event;
      if (frames.size() == 2)
        event = codec::decode_as<wire::Event>(transport::view(frames[1]), wire::MessageType::kEvent,
                                              nullptr, &why);
      if (!event) {
        transport::rejected_frames_counter().add();
        log_.debug("event_rejected", {{"reason", why}});
        continue;
      }
      hints_.add();
      targets.clear();
      {
        std::lock_guard lock(mutex_);
        const auto it = listeners_.find(std::string(transport::view(frames[0])));
        if (it == listeners_.end()) continue;  // a prefix match, or unsubscribed meanwhile
        for (const auto& registration : it->second)
          if (auto listener = registration.listener.lock()) targets.push_back(std::move(listener));
      }
      for (const auto& listener : targets) listener->on_event(*event);
      // Released here, outside the lock: a listener whose last owner this was
      // is destroyed now and may unsubscribe.
      targets.clear();
    }
  }
  log_.info("stopped");
}

}  // namespace chat4all::frontend
