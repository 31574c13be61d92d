// SPDX-License-Identifier: Apache-2.0
// The gateway's I/O threads. Each runs one io_context, and a connection lives on one of them for
// its whole life, so nothing of a connection needs a lock or a strand. A thread also ticks every
// session it runs a few times a second for their deadlines (handshake, idle, unanswered
// requests): one timer per thread rather than one per connection, which would cost each of
// hundreds of thousands of idle sessions a timer.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <utility>  // before Boost.Asio: g++ 12 in C++20 needs std::exchange declared first
#include <vector>

namespace ember::gate {

class Session;

class IoPool {
 public:
  explicit IoPool(int threads, std::chrono::milliseconds tick_period);
  ~IoPool();
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  void start();
  /// Stops the threads after their current handlers; what is still queued is dropped.
  void stop();

  /// The context a new connection goes to (round robin).
  std::size_t next_index() noexcept;
  boost::asio::io_context& context(std::size_t index) noexcept { return workers_[index]->io; }
  [[nodiscard]] std::size_t size() const noexcept { return workers_.size(); }

  /// Runs `fn` for every session, on each session's own thread.
  void post_each(std::function<void(Session&)> fn);

  /// On the thread of `index`: the session is ticked until forget().
  void watch(std::size_t index, Session* session);
  void forget(std::size_t index, Session* session);

 private:
  struct Worker {
    boost::asio::io_context io{1};
    boost::asio::steady_timer timer{io};
    std::vector<Session*> sessions;
    std::thread thread;
  };
  void arm(Worker& worker);

  std::vector<std::unique_ptr<Worker>> workers_;
  std::chrono::milliseconds tick_period_;
  std::size_t next_ = 0;
  bool started_ = false;
};

}  // namespace ember::gate
