// SPDX-License-Identifier: Apache-2.0
#include "net/connection.hpp"

#include <algorithm>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <cstring>

#include "net/log_text.hpp"

namespace ember::net::detail {

std::string remote_ip(const tcp::socket& socket) {
  asio::error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) {
    return "an unknown address";
  }
  auto address = endpoint.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return address.to_string();
}

void Connection::arm_handshake_timer() {
  timer_.expires_after(t_.options.handshake_timeout);
  timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
    if (!ec && !self->open_) {
      // The socket closes with the connection: a peer that went silent (or never meant to speak)
      // holds no descriptor past the timeout.
      self->close("no handshake within " + describe_span(self->t_.options.handshake_timeout),
                  Reject::handshake_timeout);
    }
  });
}

void Connection::start_client() {
  if (closed_) {
    return;
  }
  arm_handshake_timer();
  write_handshake(handshake_.client_hello(t_.options));
  read_frame(kHandshakeMaxFrame, [self = shared_from_this()](std::string&& body) {
    auto answer = self->handshake_.answer_server(self->t_.options, body, self->peer_,
                                                 self->t_.address_of(self->peer_));
    if (auto* refusal = std::get_if<Refusal>(&answer)) {
      self->give_up(std::move(*refusal));
      return;
    }
    self->write_handshake(std::get<wire::Proof>(answer));
    self->opened();
  });
}

void Connection::start_server() {
  arm_handshake_timer();
  read_frame(kHandshakeMaxFrame, [self = shared_from_this()](std::string&& body) {
    auto answer = self->handshake_.answer_client(self->t_.options, body);
    if (auto* refusal = std::get_if<Refusal>(&answer)) {
      self->give_up(std::move(*refusal));
      return;
    }
    self->write_handshake(std::get<wire::Hello>(answer));
    self->read_frame(kHandshakeMaxFrame, [self](std::string&& body2) {
      if (auto refusal = self->handshake_.check_client_proof(self->t_.options, body2)) {
        self->give_up(std::move(*refusal));
        return;
      }
      self->peer_ = self->handshake_.client_id();
      self->opened();
    });
  });
}

void Connection::give_up(Refusal refusal) {
  if (refusal.last) {
    refuse(*refusal.last, std::move(refusal.why), refusal.reason);
  } else {
    close(refusal.why, refusal.reason);
  }
}

void Connection::opened() {
  asio::error_code ignored;
  timer_.cancel();
  open_ = true;
  t_.opened(shared_from_this());
  read_loop();
}

void Connection::read_loop() {
  constexpr std::size_t kReadChunk = 64 * 1024;
  if (in_buf_.size() - in_len_ < kReadChunk / 4) {
    in_buf_.resize(std::max(in_buf_.size() * 2, in_len_ + kReadChunk));
  }
  socket_.async_read_some(
      asio::buffer(in_buf_.data() + in_len_, in_buf_.size() - in_len_),
      [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
        if (ec) {
          if (self->in_len_ > 0 && ec == asio::error::eof) {
            self->close("truncated frame: peer closed the connection");
          } else {
            self->close(ec == asio::error::eof ? "peer closed the connection" : ec.message());
          }
          return;
        }
        self->in_len_ += n;
        if (self->consume_frames()) {
          self->read_loop();
        }
      });
}

bool Connection::consume_frames() {
  // Authenticated: from now on frames may be as large as the configured limit.
  const std::size_t limit = t_.options.max_frame;
  std::size_t pos = 0;
  // Whatever ends this read (all frames cut, a partial one, an oversized one, the connection
  // closed by a handler), a receiver that gathered what the frames carried hands it on now.
  struct AfterFrames {
    const std::function<void()>& hook;
    const std::size_t& consumed;
    ~AfterFrames() {
      if (consumed > 0 && hook) {
        hook();
      }
    }
  } after_frames{t_.options.after_frames, pos};
  while (in_len_ - pos >= kLengthPrefix) {
    const std::size_t length = decode_length(in_buf_.data() + pos);
    if (length > limit) {
      close(describe_over_limit(length, limit), Reject::bad_frame);
      return false;
    }
    if (in_len_ - pos - kLengthPrefix < length) {
      if (in_buf_.size() < length + kLengthPrefix) {
        in_buf_.resize(length + kLengthPrefix);  // room for this frame (bounded by the limit)
      }
      break;
    }
    t_.frames_in.fetch_add(1, std::memory_order_relaxed);
    t_.bytes_in.fetch_add(length + kLengthPrefix, std::memory_order_relaxed);
    if (t_.on_frame) {
      t_.on_frame(peer_, std::string_view(in_buf_.data() + pos + kLengthPrefix, length));
    }
    pos += kLengthPrefix + length;
    if (closed_) {
      return false;
    }
  }
  if (pos > 0) {
    std::memmove(in_buf_.data(), in_buf_.data() + pos, in_len_ - pos);
    in_len_ -= pos;
  }
  return true;
}

void Connection::read_frame(std::size_t limit, std::function<void(std::string&&)> then) {
  auto self = shared_from_this();
  asio::async_read(
      socket_, asio::buffer(header_),
      [self, limit, then = std::move(then)](const asio::error_code& ec, std::size_t n) mutable {
        if (ec == asio::error::operation_aborted) {
          self->close(ec.message());  // closed already (timeout, shutdown)
          return;
        }
        if (ec) {
          // Hanging up in the middle of the handshake counts as a refused attempt.
          if (n > 0) {
            self->close("truncated frame header: " + ec.message(), Reject::bad_frame);
          } else {
            self->close(ec == asio::error::eof ? "peer closed the connection" : ec.message(),
                        Reject::hung_up);
          }
          return;
        }
        std::size_t length = decode_length(self->header_.data());
        if (length > limit) {
          self->close(describe_over_limit(length, limit), Reject::bad_frame);
          return;
        }
        self->body_.resize(length);
        asio::async_read(
            self->socket_, asio::buffer(self->body_),
            [self, then = std::move(then)](const asio::error_code& ec2, std::size_t) mutable {
              if (ec2) {
                self->close(
                    "truncated frame: " + ec2.message(),
                    ec2 == asio::error::operation_aborted ? Reject::none : Reject::bad_frame);
                return;
              }
              then(std::move(self->body_));
            });
      });
}

void Connection::write_handshake(const google::protobuf::Message& m) {
  Chunk chunk;
  chunk.append(m.SerializeAsString());
  queue_.push_front(std::move(chunk));  // handshake frames go before anything queued
  ++handshake_frames_;
  flush();
}

void Connection::send(Chunk chunk, bool defer) {
  if (closed_) {
    t_.dropped.fetch_add(chunk.frames);
    return;
  }
  queue_.push_back(std::move(chunk));
  if (!writing_ && open_ && !defer) {
    flush();
  }
}

void Connection::flush() {
  if (writing_ || queue_.empty() || closed_) {
    return;
  }
  // Everything queued goes out in one gather write: coalescing small frames into few syscalls.
  in_flight_.clear();
  std::vector<asio::const_buffer> buffers;
  buffers.reserve(queue_.size());
  std::size_t bytes = 0;
  std::size_t all_frames = 0;
  while (!queue_.empty()) {
    in_flight_.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  for (const auto& chunk : in_flight_) {
    buffers.emplace_back(asio::buffer(chunk.bytes));
    bytes += chunk.bytes.size();
    all_frames += chunk.frames;
  }
  writing_ = true;
  // Handshake frames are not payload: keep them out of the counters.
  std::size_t handshake = std::min(handshake_frames_, all_frames);
  handshake_frames_ -= handshake;
  std::size_t frames = all_frames - handshake;
  asio::async_write(
      socket_, buffers,
      [self = shared_from_this(), frames, bytes](const asio::error_code& ec, std::size_t) {
        self->writing_ = false;
        if (self->close_when_written_ && (ec || self->queue_.empty())) {
          self->t_.recycle(self->in_flight_);
          self->close(self->refusal_why_, self->refusal_reason_);
          return;
        }
        if (ec) {
          self->close("write failed: " + ec.message());
          return;
        }
        self->t_.frames_out.fetch_add(frames);
        self->t_.bytes_out.fetch_add(bytes);
        self->t_.recycle(self->in_flight_);
        if (!self->queue_.empty()) {
          self->flush();
        } else if (self->open_) {
          self->t_.write_idle(self);
        }
      });
}

void Connection::close(const std::string& why, Reject rejected) {
  if (closed_) {
    return;
  }
  closed_ = true;
  bool was_open = open_;
  open_ = false;
  t_.drop_direct(this);
  asio::error_code ignored;
  timer_.cancel();
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  if (rejected != Reject::none) {
    t_.refused(remote_ip_.empty() ? "an unknown address" : remote_ip_, rejected,
               peer_.empty() ? why : "node " + peer_ + ": " + why);
  }
  for (const auto& chunk : queue_) {
    t_.dropped.fetch_add(chunk.frames);
  }
  queue_.clear();
  t_.closed(shared_from_this(), why, was_open, refused_);
}

void Connection::refuse(const google::protobuf::Message& last, std::string why, Reject rejected) {
  refused_ = true;
  close_when_written_ = true;
  refusal_why_ = std::move(why);
  refusal_reason_ = rejected;
  write_handshake(last);
  if (!writing_) {
    close(refusal_why_, refusal_reason_);  // nothing could be written (closed already)
  }
}

}  // namespace ember::net::detail
