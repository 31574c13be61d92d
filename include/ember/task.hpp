// SPDX-License-Identifier: Apache-2.0
//
// Task<T>: a lazily started coroutine. A handler written as a coroutine suspends on
// `co_await bus.co_call(...)` without holding a thread; it resumes through its service's
// mailbox, on the lane of the message it was handling, so there is never a second thread inside
// a single-lane service:
//
//   ember::Task<ember::Result<pb::Profile>> Lobby::load(const pb::ProfileQuery& q) {
//     auto row = co_await select(ember::Selector::name("db")).co_call<pb::Row>("RpcGet", q);
//     if (!row) co_return row.error();
//     co_return to_profile(*row);        // other messages may have run while we waited
//   }
#pragma once

#include <ember/requires_cxx20.hpp>

#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <utility>

namespace ember {

template <class T>
class [[nodiscard]] Task {
 public:
  struct promise_type {
    std::optional<T> value;
    std::exception_ptr error;
    std::coroutine_handle<> continuation;
    /// Set for a detached root: called with this promise right before the frame frees itself.
    std::function<void(promise_type&)> on_done;

    Task get_return_object() noexcept {
      return Task{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }

    struct FinalAwaiter {
      promise_type* promise;
      bool await_ready() noexcept {
        if (!promise->continuation && promise->on_done) {
          // Detached root: hand over the result, then let the frame destroy itself.
          promise->on_done(*promise);
          return true;
        }
        return false;
      }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        auto next = h.promise().continuation;
        return next ? next : std::noop_coroutine();
      }
      void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return FinalAwaiter{this}; }

    template <class U>
    void return_value(U&& v) {
      value.emplace(std::forward<U>(v));
    }
    void unhandled_exception() noexcept { error = std::current_exception(); }
  };

  using Handle = std::coroutine_handle<promise_type>;

  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (handle_) {
        handle_.destroy();
      }
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (handle_) {
      handle_.destroy();
    }
  }

  // Awaiting a Task starts it and resumes the awaiter when it finishes (symmetric transfer).
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    handle_.promise().continuation = awaiting;
    return handle_;
  }
  T await_resume() {
    auto& p = handle_.promise();
    if (p.error) {
      std::rethrow_exception(p.error);
    }
    return std::move(*p.value);
  }

  /// Gives up ownership (used to run a Task detached; see detail::start_detached).
  Handle release() noexcept { return std::exchange(handle_, {}); }

 private:
  explicit Task(Handle h) noexcept : handle_(h) {}
  Handle handle_;
};

}  // namespace ember
