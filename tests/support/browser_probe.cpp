// SPDX-License-Identifier: Apache-2.0
// Drives headless Chromium through the DevTools protocol on a pipe (--remote-debugging-pipe):
// opens a page, then evaluates a JavaScript expression every 100 ms until its text contains what
// the caller expects, or a deadline passes. Real time throughout: --virtual-time-budget would
// fast-forward the page's own timers (a login timeout) past a WebSocket exchange still under way.
//
//   browser_probe --chrome PATH --url URL --expression JS --expect TEXT [--report JS]
//                 [--timeout-ms N] [--profile DIR] [--screenshot FILE.png]
//
// Exit 0 when the expression's value contains TEXT (it is printed), 1 when the deadline passed
// (the last value and the --report expression's value are printed), 2 on bad arguments or when
// the browser cannot be started or stops answering.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::string json_quote(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// The string value of the first `"key":"..."` in a message, unescaped (\uXXXX beyond ASCII is
// kept as written: the probe only looks for ASCII text in it).
std::optional<std::string> string_field(std::string_view message, std::string_view key) {
  const std::string needle = "\"" + std::string(key) + "\":\"";
  const auto at = message.find(needle);
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  std::string value;
  for (auto i = at + needle.size(); i < message.size(); ++i) {
    const char c = message[i];
    if (c == '"') {
      return value;
    }
    if (c != '\\' || i + 1 == message.size()) {
      value += c;
      continue;
    }
    const char escaped = message[++i];
    switch (escaped) {
      case 'n': value += '\n'; break;
      case 't': value += '\t'; break;
      case 'r': break;
      case 'u':
        if (i + 4 < message.size() && message.substr(i + 1, 2) == "00") {
          value += static_cast<char>(
              std::strtol(std::string(message.substr(i + 3, 2)).c_str(), nullptr, 16));
          i += 4;
        } else {
          value += "\\u";
        }
        break;
      default: value += escaped;
    }
  }
  return std::nullopt;
}

class Browser {
 public:
  // Starts the browser with the protocol on fds 3 (its input) and 4 (its output).
  bool start(const std::string& chrome, const std::string& profile) {
    int to_browser[2];
    int from_browser[2];
    if (::pipe2(to_browser, O_CLOEXEC) != 0 || ::pipe2(from_browser, O_CLOEXEC) != 0) {
      std::perror("browser_probe: pipe");
      return false;
    }
    pid_ = ::fork();
    if (pid_ < 0) {
      std::perror("browser_probe: fork");
      return false;
    }
    if (pid_ == 0) {
      // Moved above 4 first: a pipe end that already is fd 3 or 4 would stay close-on-exec
      // through a dup2 onto itself, and one of them could be overwritten by the other's dup2.
      const int browser_in = ::fcntl(to_browser[0], F_DUPFD_CLOEXEC, 10);
      const int browser_out = ::fcntl(from_browser[1], F_DUPFD_CLOEXEC, 10);
      if (browser_in < 0 || browser_out < 0 || ::dup2(browser_in, 3) != 3 ||
          ::dup2(browser_out, 4) != 4) {
        ::_exit(127);
      }
      const std::string profile_arg = "--user-data-dir=" + profile;
      const char* argv[] = {chrome.c_str(),      "--headless",     "--no-sandbox",
                            "--disable-gpu",     "--no-first-run", "--remote-debugging-pipe",
                            profile_arg.c_str(), "about:blank",    nullptr};
      ::execv(chrome.c_str(), const_cast<char* const*>(argv));
      std::perror("browser_probe: exec");
      ::_exit(127);
    }
    ::close(to_browser[0]);
    ::close(from_browser[1]);
    out_ = to_browser[1];
    in_ = from_browser[0];
    return true;
  }

  // Sends a command and returns its response, or nothing if none came by `deadline`.
  std::optional<std::string> command(const std::string& method, const std::string& params,
                                     const std::string& session, Clock::time_point deadline) {
    const int id = ++last_id_;
    std::string message = "{\"id\":" + std::to_string(id) + ",\"method\":" + json_quote(method) +
                          ",\"params\":" + params;
    if (!session.empty()) {
      message += ",\"sessionId\":" + json_quote(session);
    }
    message += "}";
    message.push_back('\0');
    for (std::size_t sent = 0; sent < message.size();) {
      const auto n = ::write(out_, message.data() + sent, message.size() - sent);
      if (n <= 0) {
        return std::nullopt;
      }
      sent += static_cast<std::size_t>(n);
    }
    const std::string response_start = "{\"id\":" + std::to_string(id) + ",";
    while (auto reply = next_message(deadline)) {
      if (reply->rfind(response_start, 0) == 0) {
        return reply;
      }
    }
    return std::nullopt;
  }

  // Asks the browser to close, then kills it if it has not exited within two seconds.
  void stop() {
    if (pid_ <= 0) {
      return;
    }
    (void)command("Browser.close", "{}", "", Clock::now() + std::chrono::seconds(2));
    const auto deadline = Clock::now() + std::chrono::seconds(2);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
  }

 private:
  // One NUL-terminated message (a response or an event), or nothing by `deadline`.
  std::optional<std::string> next_message(Clock::time_point deadline) {
    for (;;) {
      if (const auto end = buffer_.find('\0'); end != std::string::npos) {
        std::string message = buffer_.substr(0, end);
        buffer_.erase(0, end + 1);
        return message;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        return std::nullopt;
      }
      pollfd readable{in_, POLLIN, 0};
      const int ready = ::poll(&readable, 1, static_cast<int>(left));
      if (ready < 0 && errno == EINTR) {
        continue;
      }
      if (ready <= 0) {
        return std::nullopt;
      }
      char chunk[65536];
      const auto n = ::read(in_, chunk, sizeof chunk);
      if (n <= 0) {
        return std::nullopt;  // the browser exited
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  pid_t pid_ = -1;
  int out_ = -1;
  int in_ = -1;
  int last_id_ = 0;
  std::string buffer_;
};

struct Options {
  std::string chrome;
  std::string url;
  std::string expression;
  std::string expect;
  std::string report;
  std::string profile;
  std::string screenshot;  // PNG of the page once the expectation held
  int timeout_ms = 30000;
};

std::optional<Options> parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--chrome") {
      options.chrome = value;
    } else if (flag == "--url") {
      options.url = value;
    } else if (flag == "--expression") {
      options.expression = value;
    } else if (flag == "--expect") {
      options.expect = value;
    } else if (flag == "--report") {
      options.report = value;
    } else if (flag == "--profile") {
      options.profile = value;
    } else if (flag == "--screenshot") {
      options.screenshot = value;
    } else if (flag == "--timeout-ms") {
      options.timeout_ms = std::atoi(value.c_str());
    } else {
      std::fprintf(stderr, "browser_probe: unknown argument %s\n", argv[i]);
      return std::nullopt;
    }
  }
  if (argc % 2 == 0 || options.chrome.empty() || options.url.empty() ||
      options.expression.empty() || options.expect.empty() || options.profile.empty() ||
      options.timeout_ms <= 0) {
    std::fprintf(stderr,
                 "usage: browser_probe --chrome PATH --url URL --expression JS --expect TEXT "
                 "--profile DIR [--report JS] [--timeout-ms N] [--screenshot FILE]\n");
    return std::nullopt;
  }
  return options;
}

std::optional<std::string> evaluate(Browser& browser, const std::string& session,
                                    const std::string& expression, Clock::time_point deadline) {
  const auto reply = browser.command(
      "Runtime.evaluate",
      "{\"expression\":" + json_quote("String(" + expression + ")") + ",\"returnByValue\":true}",
      session, deadline);
  return reply ? string_field(*reply, "value") : std::nullopt;
}

std::string base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z')
      return c - 'A';
    if (c >= 'a' && c <= 'z')
      return c - 'a' + 26;
    if (c >= '0' && c <= '9')
      return c - '0' + 52;
    if (c == '+')
      return 62;
    if (c == '/')
      return 63;
    return -1;
  };
  std::string out;
  unsigned bits = 0;
  int count = 0;
  for (char c : text) {
    const int v = value(c);
    if (v < 0) {
      continue;  // padding
    }
    bits = (bits << 6) | static_cast<unsigned>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xff);
    }
  }
  return out;
}

// Saves a PNG of the page; false (and a message) when the browser gives none.
bool save_screenshot(Browser& browser, const std::string& session, const std::string& path) {
  (void)browser.command("Emulation.setDeviceMetricsOverride",
                        "{\"width\":1400,\"height\":1000,\"deviceScaleFactor\":1,\"mobile\":false}",
                        session, Clock::now() + std::chrono::seconds(5));
  const auto reply = browser.command("Page.captureScreenshot", "{\"format\":\"png\"}", session,
                                     Clock::now() + std::chrono::seconds(10));
  const auto data = reply ? string_field(*reply, "data") : std::nullopt;
  if (!data) {
    std::fprintf(stderr, "browser_probe: no screenshot\n");
    return false;
  }
  const std::string png = base64_decode(*data);
  FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr || std::fwrite(png.data(), 1, png.size(), file) != png.size()) {
    std::perror("browser_probe: writing the screenshot");
    if (file != nullptr) {
      std::fclose(file);
    }
    return false;
  }
  std::fclose(file);
  std::printf("screenshot: %s (%zu bytes)\n", path.c_str(), png.size());
  return true;
}

int probe(Browser& browser, const Options& options) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(options.timeout_ms);
  const auto target = browser.command("Target.createTarget",
                                      "{\"url\":" + json_quote(options.url) + "}", "", deadline);
  const auto target_id = target ? string_field(*target, "targetId") : std::nullopt;
  if (!target_id) {
    std::fprintf(stderr, "browser_probe: the browser did not open a page: %s\n",
                 target ? target->c_str() : "(no answer)");
    return 2;
  }
  const auto attached = browser.command(
      "Target.attachToTarget", "{\"targetId\":" + json_quote(*target_id) + ",\"flatten\":true}", "",
      deadline);
  const auto session = attached ? string_field(*attached, "sessionId") : std::nullopt;
  if (!session) {
    std::fprintf(stderr, "browser_probe: could not attach to the page\n");
    return 2;
  }
  std::string last = "(never evaluated)";
  while (Clock::now() < deadline) {
    if (auto value = evaluate(browser, *session, options.expression, deadline)) {
      last = *value;
      if (last.find(options.expect) != std::string::npos) {
        const auto waited =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
        std::printf("%s\n(after %lld ms)\n", last.c_str(), static_cast<long long>(waited.count()));
        if (!options.report.empty()) {
          const auto report =
              evaluate(browser, *session, options.report, Clock::now() + std::chrono::seconds(5));
          std::printf("%s\n", report.value_or("(report not evaluated)").c_str());
        }
        if (!options.screenshot.empty() &&
            !save_screenshot(browser, *session, options.screenshot)) {
          return 1;
        }
        return 0;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::printf("timed out after %d ms; the expression last gave: %s\n", options.timeout_ms,
              last.c_str());
  if (!options.report.empty()) {
    const auto report =
        evaluate(browser, *session, options.report, Clock::now() + std::chrono::seconds(5));
    std::printf("%s\n", report.value_or("(report not evaluated)").c_str());
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const auto options = parse(argc, argv);
  if (!options) {
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);  // a browser that exits shows up as a failed write, not a signal
  Browser browser;
  if (!browser.start(options->chrome, options->profile)) {
    return 2;
  }
  const int result = probe(browser, *options);
  browser.stop();
  return result;
}
