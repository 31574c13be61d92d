// SPDX-License-Identifier: Apache-2.0
#include "gate/io_pool.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>

#include "gate/session.hpp"

namespace ember::gate {

IoPool::IoPool(int threads, std::chrono::milliseconds tick_period) : tick_period_(tick_period) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    workers_.push_back(std::make_unique<Worker>());
  }
}

IoPool::~IoPool() {
  stop();
}

void IoPool::start() {
  if (started_) {
    return;
  }
  started_ = true;
  for (auto& w : workers_) {
    Worker& worker = *w;
    arm(worker);  // the armed timer also keeps run() from returning while idle
    worker.thread = std::thread([&worker] {
      for (;;) {
        try {
          worker.io.run();
          return;
        } catch (...) {
          // A handler that throws must not take the gateway's thread with it; handlers catch
          // what they expect, so this is a bug elsewhere, and the thread goes on serving.
        }
      }
    });
  }
}

void IoPool::arm(Worker& worker) {
  worker.timer.expires_after(tick_period_);
  worker.timer.async_wait([this, &worker](const boost::system::error_code& ec) {
    if (ec) {
      return;  // cancelled: stopping
    }
    const auto now = std::chrono::steady_clock::now();
    // A tick may end its session, which forgets itself by moving the last one into its slot:
    // walking down, the one moved in was ticked already.
    for (std::size_t i = worker.sessions.size(); i-- > 0;) {
      if (i < worker.sessions.size()) {
        // Held: a tick may close the link, and the link held the session's last reference.
        const std::shared_ptr<Session> session = worker.sessions[i]->shared_from_this();
        session->tick(now);
      }
    }
    arm(worker);
  });
}

void IoPool::stop() {
  for (auto& w : workers_) {
    w->io.stop();
  }
  for (auto& w : workers_) {
    if (w->thread.joinable()) {
      w->thread.join();
    }
  }
}

std::size_t IoPool::next_index() noexcept {
  const std::size_t index = next_;
  next_ = (next_ + 1) % workers_.size();
  return index;
}

void IoPool::post_each(std::function<void(Session&)> fn) {
  for (auto& w : workers_) {
    Worker& worker = *w;
    boost::asio::post(worker.io, [&worker, fn] {
      for (std::size_t i = worker.sessions.size(); i-- > 0;) {  // fn may end sessions: see arm()
        if (i < worker.sessions.size()) {
          const std::shared_ptr<Session> session = worker.sessions[i]->shared_from_this();
          fn(*session);
        }
      }
    });
  }
}

void IoPool::watch(std::size_t index, Session* session) {
  auto& sessions = workers_[index]->sessions;
  session->io_slot = sessions.size();
  sessions.push_back(session);
}

void IoPool::forget(std::size_t index, Session* session) {
  auto& sessions = workers_[index]->sessions;
  const std::size_t slot = session->io_slot;
  if (slot >= sessions.size() || sessions[slot] != session) {
    return;  // not watched (never opened, or forgotten already)
  }
  sessions[slot] = sessions.back();
  sessions[slot]->io_slot = slot;
  sessions.pop_back();
  session->io_slot = static_cast<std::size_t>(-1);
}

}  // namespace ember::gate
