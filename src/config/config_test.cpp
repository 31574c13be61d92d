// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <ember/config.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace ember {
namespace {

using std::chrono::milliseconds;

// Parses text that must be rejected and returns the message, so each test can check the exact
// source:line and key path an operator would see.
std::string parse_error(std::string_view yaml) {
  Result<NodeConfig> result = parse_node_config(yaml, "node.yaml");
  EXPECT_FALSE(result.has_value()) << "expected an error for:\n" << yaml;
  if (result)
    return {};
  EXPECT_EQ(result.error().code(), Errc::invalid_argument);
  return result.error().message();
}

NodeConfig parse_ok(std::string_view yaml) {
  Result<NodeConfig> result = parse_node_config(yaml, "node.yaml");
  EXPECT_TRUE(result.has_value()) << (result ? "" : result.error().message());
  return result ? *result : NodeConfig{};
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string{text}.find(part), std::string::npos) << "message: " << (text)

// Environment variable names unique to this process so parallel runs cannot interfere.
std::string env_name(std::string_view tag) {
  return "EMBER_CFG_TEST_" + std::string{tag} + "_" + std::to_string(::getpid());
}

class ScopedEnv {
 public:
  ScopedEnv(std::string name, const char* value) : name_(std::move(name)) {
    if (value != nullptr) {
      ::setenv(name_.c_str(), value, 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ~ScopedEnv() { ::unsetenv(name_.c_str()); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "ember_config_test_XXXXXX").string();
    char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string write(const std::string& name, std::string_view content) const {
    const std::string file = (path_ / name).string();
    std::ofstream out(file, std::ios::binary);
    out << content;
    return file;
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// --- parse_duration ---------------------------------------------------------------------------

TEST(ParseDuration, GoStyleUnits) {
  struct Case {
    std::string_view text;
    std::int64_t ms;
  };
  const Case cases[] = {
      {"10ms", 10},
      {"1s", 1000},
      {"1.5s", 1500},
      {"1m30s", 90'000},
      {"2h", 7'200'000},
      {"250us", 0},
      {"1500us", 1},
      {"1500000ns", 1},
      {"2\xC2\xB5s", 0},
      {"3000\xCE\xBCs", 3},
      {"0.3s", 300},
      {"0.1s", 100},
      {".5s", 500},
      {"5.s", 5000},
      {"1h1m1s1ms", 3'661'001},
      {"0s", 0},
      {"1.25m", 75'000},
      {"0.001s", 1},
      {"1.9999ms", 1},
      {"1.5h", 5'400'000},
      {"100ms100ms", 200},
  };
  for (const Case& c : cases) {
    Result<milliseconds> parsed = parse_duration(c.text);
    ASSERT_TRUE(parsed.has_value()) << c.text << ": " << parsed.error().message();
    EXPECT_EQ(parsed->count(), c.ms) << c.text;
  }
}

TEST(ParseDuration, BareIntegerIsMilliseconds) {
  EXPECT_EQ(parse_duration("1500").value().count(), 1500);
  EXPECT_EQ(parse_duration("0").value().count(), 0);
  EXPECT_EQ(parse_duration("007").value().count(), 7);
}

TEST(ParseDuration, SubMillisecondTruncates) {
  EXPECT_EQ(parse_duration("500us").value().count(), 0);
  EXPECT_EQ(parse_duration("999999ns").value().count(), 0);
  EXPECT_EQ(parse_duration("1999us").value().count(), 1);
}

TEST(ParseDuration, RejectsBadInput) {
  for (std::string_view text :
       {"",     "-5s", "-1", "-0",  "abc",   "1.5", "10 ms", " 10ms", "10ms ", "5x",
        "1h30", "s",   ".s", "+5s", "1..5s", "ms",  "5sec",  "1e3ms", "0x10",  "1,5s"}) {
    Result<milliseconds> parsed = parse_duration(text);
    EXPECT_FALSE(parsed.has_value()) << "'" << text << "' parsed as " << parsed->count();
    if (!parsed) {
      EXPECT_EQ(parsed.error().code(), Errc::invalid_argument) << text;
      EXPECT_CONTAINS(parsed.error().message(), "invalid duration");
    }
  }
}

TEST(ParseDuration, MessagesExplainTheProblem) {
  EXPECT_CONTAINS(parse_duration("").error().message(), "empty");
  EXPECT_CONTAINS(parse_duration("-5s").error().message(), "negative");
  EXPECT_CONTAINS(parse_duration("5x").error().message(), "unknown unit 'x'");
  EXPECT_CONTAINS(parse_duration("1h30").error().message(), "missing unit");
}

TEST(ParseDuration, RejectsOverflow) {
  EXPECT_FALSE(parse_duration("9223372036854775807").has_value());
  EXPECT_FALSE(parse_duration("99999999999999999999999ms").has_value());
  EXPECT_FALSE(parse_duration("3000000h").has_value());
  EXPECT_CONTAINS(parse_duration("3000000h").error().message(), "out of range");
  EXPECT_FALSE(parse_duration("2000000h2000000h").has_value());
  // Just inside the range still works.
  EXPECT_EQ(parse_duration("2000000h").value().count(), 2'000'000LL * 3'600'000);
}

// --- expand_env -------------------------------------------------------------------------------

TEST(ExpandEnv, SubstitutesSetVariable) {
  ScopedEnv var(env_name("SET"), "game-7");
  Result<std::string> out = expand_env("NodeId: ${" + var.name() + "}\n", "node.yaml");
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(*out, "NodeId: game-7\n");
}

TEST(ExpandEnv, SeveralReferencesOnOneLine) {
  ScopedEnv a(env_name("A"), "x");
  ScopedEnv b(env_name("B"), "y");
  Result<std::string> out =
      expand_env("${" + a.name() + "}-${" + b.name() + "}${" + a.name() + "}", "node.yaml");
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(*out, "x-yx");
}

TEST(ExpandEnv, DefaultUsedWhenUnset) {
  ScopedEnv var(env_name("UNSET_DEF"), nullptr);
  Result<std::string> out = expand_env("Level: ${" + var.name() + ":-debug}", "node.yaml");
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(*out, "Level: debug");
}

TEST(ExpandEnv, DefaultIgnoredWhenSet) {
  ScopedEnv var(env_name("SET_DEF"), "warn");
  Result<std::string> out = expand_env("Level: ${" + var.name() + ":-debug}", "node.yaml");
  ASSERT_TRUE(out.has_value()) << out.error().message();
  EXPECT_EQ(*out, "Level: warn");
}

TEST(ExpandEnv, DefaultUsedWhenSetButEmpty) {
  ScopedEnv var(env_name("EMPTY"), "");
  EXPECT_EQ(expand_env("${" + var.name() + ":-fallback}", "x").value(), "fallback");
  // Without a default an empty value is still a value.
  EXPECT_EQ(expand_env("[${" + var.name() + "}]", "x").value(), "[]");
}

TEST(ExpandEnv, EmptyDefaultAndDefaultWithSpecialCharacters) {
  ScopedEnv var(env_name("UNSET_SPECIAL"), nullptr);
  EXPECT_EQ(expand_env("a${" + var.name() + ":-}b", "x").value(), "ab");
  EXPECT_EQ(expand_env("${" + var.name() + ":-/var/log:ember -x}", "x").value(),
            "/var/log:ember -x");
}

TEST(ExpandEnv, DollarEscapesAndLoneDollar) {
  EXPECT_EQ(expand_env("price: $$5", "x").value(), "price: $5");
  EXPECT_EQ(expand_env("$$$$", "x").value(), "$$");
  EXPECT_EQ(expand_env("literal: $${NOT_EXPANDED}", "x").value(), "literal: ${NOT_EXPANDED}");
  EXPECT_EQ(expand_env("cost $5 and $x", "x").value(), "cost $5 and $x");
  EXPECT_EQ(expand_env("trailing $", "x").value(), "trailing $");
  EXPECT_EQ(expand_env("$", "x").value(), "$");
  EXPECT_EQ(expand_env("", "x").value(), "");
}

TEST(ExpandEnv, UnsetWithoutDefaultNamesLine) {
  ScopedEnv var(env_name("UNSET"), nullptr);
  Result<std::string> out =
      expand_env("NodeConf:\n  # comment\n  NodeId: ${" + var.name() + "}\n", "node.yaml");
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().code(), Errc::invalid_argument);
  EXPECT_EQ(out.error().message(),
            "node.yaml:3: environment variable " + var.name() + " is not set");
}

TEST(ExpandEnv, UnterminatedReferenceNamesLine) {
  Result<std::string> out = expand_env("a: 1\nb: ${FOO\nc: }\n", "node.yaml");
  ASSERT_FALSE(out.has_value());
  EXPECT_CONTAINS(out.error().message(), "node.yaml:2:");
  EXPECT_CONTAINS(out.error().message(), "unterminated");

  Result<std::string> at_end = expand_env("a: 1\n\nb: ${FOO", "node.yaml");
  ASSERT_FALSE(at_end.has_value());
  EXPECT_CONTAINS(at_end.error().message(), "node.yaml:3:");
}

TEST(ExpandEnv, RejectsValueWithLineBreak) {
  ScopedEnv var(env_name("MULTILINE"), "a\nb");
  Result<std::string> out = expand_env("x: 1\ny: ${" + var.name() + "}", "node.yaml");
  ASSERT_FALSE(out.has_value());
  EXPECT_CONTAINS(out.error().message(), "node.yaml:2:");
  EXPECT_CONTAINS(out.error().message(), var.name());
  EXPECT_CONTAINS(out.error().message(), "line break");
}

TEST(ExpandEnv, RejectsBadNamesAndUnsupportedForms) {
  for (std::string_view text :
       {"${}", "${1ABC}", "${A-B}", "${A B}", "${:-x}", "${A:?x}", "${A:x}"}) {
    Result<std::string> out = expand_env(text, "node.yaml");
    EXPECT_FALSE(out.has_value()) << text;
    if (!out) {
      EXPECT_CONTAINS(out.error().message(), "node.yaml:1:");
    }
  }
}

TEST(ExpandEnv, EmptySourceStillGetsALabel) {
  ScopedEnv var(env_name("UNSET_NOSRC"), nullptr);
  Result<std::string> out = expand_env("${" + var.name() + "}", "");
  ASSERT_FALSE(out.has_value());
  EXPECT_CONTAINS(out.error().message(), "<config>:1:");
}

// --- parse_node_config: valid input ----------------------------------------------------------

TEST(ParseNodeConfig, EmptyDocumentGivesDefaults) {
  for (std::string_view text : {"", "\n\n", "# only a comment\n# and another\n", "---\n"}) {
    NodeConfig config = parse_ok(text);
    EXPECT_EQ(config.node_id, "node");
    EXPECT_EQ(config.worker_threads, 0);
    EXPECT_EQ(config.timer_tick, milliseconds{10});
    EXPECT_EQ(config.shutdown_timeout, milliseconds{5000});
    EXPECT_EQ(config.call_timeout, milliseconds{1000});
    EXPECT_EQ(config.log.level, "info");
    EXPECT_EQ(config.log.path, "");
    EXPECT_EQ(config.log.name, "ember");
    EXPECT_TRUE(config.services.empty());
    EXPECT_EQ(config.source, "node.yaml");
  }
}

TEST(ParseNodeConfig, FullExampleWithThreeServices) {
  const std::string_view yaml = R"(# a complete node
NodeConf:
  NodeId: game-1
  WorkerThreads: 4
  TimerTick: 5ms
  ShutdownTimeout: 1m30s
  CallTimeout: 2.5s
SystemLogger:
  Level: DEBUG
  Path: /var/log/ember
  Name: game
ServiceConf:
  StartServices:
    - ClassName: LoginService
      ServiceName: login
      ServiceId: "1"
      Type: frontend
      ServerId: 7
      Version: 3
      IsPrimarySecondaryMode: true
      Pinned: false
      WorkerConf:
        WorkerNum: 4
        MaxWorkerNum: 8
        VirtualWorkerRate: 20
        MailboxSize: 10000
        Overflow: reject
      Params:
        Port: 8080
        Host: 0.0.0.0
        Secure: true
        Ratio: 0.5
        Empty:
    - ClassName: LoginService
      ServiceName: login
      ServiceId: 2
      ServerId: -1
      Version: 9000000000
      Pinned: true
    - {ClassName: RoomService, WorkerConf: {WorkerNum: 2}}
)";
  NodeConfig config = parse_ok(yaml);
  EXPECT_EQ(config.node_id, "game-1");
  EXPECT_EQ(config.worker_threads, 4);
  EXPECT_EQ(config.timer_tick, milliseconds{5});
  EXPECT_EQ(config.shutdown_timeout, milliseconds{90'000});
  EXPECT_EQ(config.call_timeout, milliseconds{2500});
  EXPECT_EQ(config.log.level, "debug");
  EXPECT_EQ(config.log.path, "/var/log/ember");
  EXPECT_EQ(config.log.name, "game");
  ASSERT_EQ(config.services.size(), 3U);

  const ServiceConfig& login1 = config.services[0];
  EXPECT_EQ(login1.class_name, "LoginService");
  EXPECT_EQ(login1.name, "login");
  EXPECT_EQ(login1.id, "1");
  EXPECT_EQ(login1.type, "frontend");
  EXPECT_EQ(login1.server_id, 7);
  EXPECT_EQ(login1.version, 3);
  EXPECT_TRUE(login1.primary_secondary);
  EXPECT_FALSE(login1.pinned);
  EXPECT_EQ(login1.worker.lanes, 4);
  EXPECT_EQ(login1.worker.max_lanes, 8);
  EXPECT_EQ(login1.worker.virtual_nodes, 20);
  EXPECT_EQ(login1.worker.mailbox_bound, 10000);
  EXPECT_EQ(login1.worker.overflow, OverflowPolicy::reject);
  const std::map<std::string, std::string> params = {
      {"Port", "8080"}, {"Host", "0.0.0.0"}, {"Secure", "true"}, {"Ratio", "0.5"}, {"Empty", ""}};
  EXPECT_EQ(login1.params, params);
  EXPECT_EQ(login1.line, 14);

  const ServiceConfig& login2 = config.services[1];
  EXPECT_EQ(login2.class_name, "LoginService");
  EXPECT_EQ(login2.name, "login");
  EXPECT_EQ(login2.id, "2");  // integer ServiceId kept as text
  EXPECT_EQ(login2.server_id, -1);
  EXPECT_EQ(login2.version, 9'000'000'000);
  EXPECT_TRUE(login2.pinned);
  EXPECT_FALSE(login2.primary_secondary);
  EXPECT_EQ(login2.line, 34);

  const ServiceConfig& room = config.services[2];
  EXPECT_EQ(room.class_name, "RoomService");
  EXPECT_EQ(room.name, "RoomService");
  EXPECT_EQ(room.worker.lanes, 2);
  EXPECT_EQ(room.line, 40);
}

TEST(ParseNodeConfig, DefaultsAppliedWhenKeysAbsent) {
  NodeConfig config = parse_ok(R"(NodeConf:
  WorkerThreads: 2
ServiceConf:
  StartServices:
    - ClassName: Echo
)");
  EXPECT_EQ(config.node_id, "node");
  EXPECT_EQ(config.worker_threads, 2);
  EXPECT_EQ(config.timer_tick, milliseconds{10});
  EXPECT_EQ(config.shutdown_timeout, milliseconds{5000});
  EXPECT_EQ(config.call_timeout, milliseconds{1000});
  EXPECT_EQ(config.log.level, "info");
  EXPECT_EQ(config.log.name, "ember");
  ASSERT_EQ(config.services.size(), 1U);
  const ServiceConfig& echo = config.services[0];
  EXPECT_EQ(echo.class_name, "Echo");
  EXPECT_EQ(echo.name, "Echo");
  EXPECT_EQ(echo.id, "");
  EXPECT_EQ(echo.type, "");
  EXPECT_EQ(echo.server_id, 0);
  EXPECT_EQ(echo.version, 0);
  EXPECT_FALSE(echo.primary_secondary);
  EXPECT_FALSE(echo.pinned);
  EXPECT_EQ(echo.worker.lanes, 1);
  EXPECT_EQ(echo.worker.max_lanes, 0);
  EXPECT_EQ(echo.worker.virtual_nodes, 100);
  EXPECT_EQ(echo.worker.mailbox_bound, 0);
  EXPECT_EQ(echo.worker.overflow, OverflowPolicy::reject);
  EXPECT_TRUE(echo.params.empty());
  EXPECT_EQ(echo.line, 5);
}

TEST(ParseNodeConfig, EmptySectionsAreEmpty) {
  NodeConfig config = parse_ok(R"(NodeConf:
  # everything commented out
SystemLogger:
ServiceConf:
  StartServices:
)");
  EXPECT_EQ(config.node_id, "node");
  EXPECT_TRUE(config.services.empty());

  NodeConfig with_empty_maps = parse_ok(R"(ServiceConf:
  StartServices:
    - ClassName: A
      WorkerConf:
      Params: {}
)");
  ASSERT_EQ(with_empty_maps.services.size(), 1U);
  EXPECT_EQ(with_empty_maps.services[0].worker.lanes, 1);
}

TEST(ParseNodeConfig, IntegerNodeIdIsAccepted) {
  EXPECT_EQ(parse_ok("NodeConf:\n  NodeId: 42\n").node_id, "42");
  EXPECT_EQ(parse_ok("NodeConf:\n  NodeId: \"007\"\n").node_id, "007");
}

TEST(ParseNodeConfig, DurationFormsInConfig) {
  NodeConfig config = parse_ok(R"(NodeConf:
  TimerTick: 1s
  ShutdownTimeout: 0
  CallTimeout: 250
)");
  EXPECT_EQ(config.timer_tick, milliseconds{1000});
  EXPECT_EQ(config.shutdown_timeout, milliseconds{0});
  EXPECT_EQ(config.call_timeout, milliseconds{250});
  EXPECT_EQ(parse_ok("NodeConf:\n  TimerTick: 1ms\n").timer_tick, milliseconds{1});
}

TEST(ParseNodeConfig, LevelsAreCaseInsensitive) {
  for (std::string_view level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    std::string upper{level};
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(parse_ok("SystemLogger:\n  Level: " + upper + "\n").log.level, level);
  }
  EXPECT_EQ(parse_ok("SystemLogger:\n  Level: Warn\n").log.level, "warn");
}

TEST(ParseNodeConfig, MaxWorkerNumZeroOrEqualIsFine) {
  NodeConfig config = parse_ok(R"(ServiceConf:
  StartServices:
    - ClassName: A
      WorkerConf: {WorkerNum: 4, MaxWorkerNum: 0}
    - ClassName: B
      WorkerConf: {MaxWorkerNum: 4, WorkerNum: 4}
)");
  ASSERT_EQ(config.services.size(), 2U);
  EXPECT_EQ(config.services[0].worker.max_lanes, 0);
  EXPECT_EQ(config.services[1].worker.max_lanes, 4);
}

TEST(ParseNodeConfig, SameNameDifferentIdIsFine) {
  NodeConfig config = parse_ok(R"(ServiceConf:
  StartServices:
    - {ClassName: Room, ServiceId: 1}
    - {ClassName: Room, ServiceId: 2}
    - {ClassName: Room, ServiceName: lobby, ServiceId: 1}
)");
  EXPECT_EQ(config.services.size(), 3U);
}

TEST(ParseNodeConfig, ParseRecordsTheSourceName) {
  EXPECT_EQ(parse_ok("NodeConf: {NodeId: a}").source, "node.yaml");
}

// Reading a value never changes the document: an alias reads what its anchor holds.
TEST(ParseNodeConfig, AnAliasReadsTheAnchoredValue) {
  NodeConfig config = parse_ok(R"(ServiceConf:
  StartServices:
    - ClassName: A
      WorkerConf:
        Scaling:
          Max: 4
          GrowStep: &step 50%
          ShrinkStep: *step
          Strategy: {Name: cpu, Params: {Step: *step}}
)");
  ASSERT_EQ(config.services.size(), 1U);
  ASSERT_NE(config.services[0].worker.scaling, nullptr);
  const ScalingConfig& scaling = *config.services[0].worker.scaling;
  EXPECT_EQ(scaling.grow.percent, 50);
  EXPECT_EQ(scaling.shrink.percent, 50);
  EXPECT_EQ(scaling.strategy.params.at("Step"), "50%");
}

// --- parse_node_config: errors ---------------------------------------------------------------

TEST(ParseNodeConfigErrors, UnknownKeyInWorkerConf) {
  const std::string message = parse_error(R"(ServiceConf:
  StartServices:
    - ClassName: A
    - ClassName: B
      WorkerConf:
        WorkerNum: 2
        WorkerNm: 3
)");
  EXPECT_EQ(message,
            "node.yaml:7: ServiceConf.StartServices[1].WorkerConf.WorkerNm: unknown key "
            "(expected one of: WorkerNum, MaxWorkerNum, VirtualWorkerRate, MailboxSize, "
            "Overflow, Scaling)");
}

TEST(ParseNodeConfigErrors, UnknownKeyAtEveryLevel) {
  EXPECT_EQ(parse_error("NodeConf: {}\nNodeConfig: {}\n"),
            "node.yaml:2: NodeConfig: unknown key (expected one of: NodeConf, ServiceConf, "
            "SystemLogger, ClusterConf, EventBusConf, GateConf, AdminConf)");
  EXPECT_CONTAINS(parse_error("NodeConf:\n  NodeID: x\n"),
                  "node.yaml:2: NodeConf.NodeID: unknown key");
  EXPECT_CONTAINS(parse_error("SystemLogger:\n  Name: x\n  level: info\n"),
                  "node.yaml:3: SystemLogger.level: unknown key");
  EXPECT_CONTAINS(
      parse_error("ServiceConf:\n  Services: []\n"),
      "node.yaml:2: ServiceConf.Services: unknown key (expected one of: StartServices)");
  EXPECT_CONTAINS(
      parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n      Name: x\n"),
      "node.yaml:4: ServiceConf.StartServices[0].Name: unknown key");
}

TEST(ParseNodeConfigErrors, KeysAreCaseSensitive) {
  EXPECT_CONTAINS(parse_error("nodeconf:\n  NodeId: x\n"), "node.yaml:1: nodeconf: unknown key");
  EXPECT_CONTAINS(parse_error("ServiceConf:\n  StartServices:\n    - className: A\n"),
                  "node.yaml:3: ServiceConf.StartServices[0].className: unknown key");
}

TEST(ParseNodeConfigErrors, ExpectedInteger) {
  EXPECT_EQ(parse_error("NodeConf:\n  NodeId: a\n  WorkerThreads: abc\n"),
            "node.yaml:3: NodeConf.WorkerThreads: expected an integer, got 'abc'");
  EXPECT_CONTAINS(parse_error("NodeConf:\n  WorkerThreads: 1.5\n"),
                  "node.yaml:2: NodeConf.WorkerThreads: expected an integer, got '1.5'");
  EXPECT_CONTAINS(parse_error("NodeConf:\n  WorkerThreads:\n"),
                  "node.yaml:2: NodeConf.WorkerThreads: expected an integer, got an empty value");
  EXPECT_CONTAINS(parse_error("NodeConf:\n  WorkerThreads: [1]\n"),
                  "node.yaml:2: NodeConf.WorkerThreads: expected an integer, got a sequence");
  EXPECT_CONTAINS(
      parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n      ServerId: x1\n"),
      "node.yaml:4: ServiceConf.StartServices[0].ServerId: expected an integer, got 'x1'");
  EXPECT_CONTAINS(
      parse_error(
          "ServiceConf:\n  StartServices:\n    - {ClassName: A, WorkerConf: {MailboxSize: 1k}}\n"),
      "node.yaml:3: ServiceConf.StartServices[0].WorkerConf.MailboxSize: expected an integer, got "
      "'1k'");
}

TEST(ParseNodeConfigErrors, ExpectedMap) {
  EXPECT_EQ(parse_error("NodeConf: 5\n"), "node.yaml:1: NodeConf: expected a map, got '5'");
  EXPECT_CONTAINS(parse_error("SystemLogger:\n  - Level\n"),
                  "node.yaml:2: SystemLogger: expected a map, got a sequence");
  EXPECT_CONTAINS(
      parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n      WorkerConf: [1, 2]\n"),
      "node.yaml:4: ServiceConf.StartServices[0].WorkerConf: expected a map, got a sequence");
  EXPECT_CONTAINS(
      parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n      Params: text\n"),
      "node.yaml:4: ServiceConf.StartServices[0].Params: expected a map, got 'text'");
  EXPECT_CONTAINS(
      parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n    - LoginService\n"),
      "node.yaml:4: ServiceConf.StartServices[1]: expected a map, got 'LoginService'");
}

TEST(ParseNodeConfigErrors, EmptySequenceItemReportsItsOwnLine) {
  EXPECT_EQ(parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n    -\n    # note\n"
                        "    - ClassName: B\n"),
            "node.yaml:4: ServiceConf.StartServices[1]: expected a map, got an empty value");
  EXPECT_CONTAINS(parse_error("ServiceConf:\n  StartServices:\n    - ~\n"),
                  "node.yaml:3: ServiceConf.StartServices[0]: expected a map, got an empty value");
}

TEST(ParseNodeConfigErrors, TopLevelMustBeAMap) {
  EXPECT_CONTAINS(parse_error("# header\n- a\n- b\n"),
                  "node.yaml:2: expected a map at the top level, got a sequence");
  EXPECT_CONTAINS(parse_error("just text\n"), "node.yaml:1: expected a map at the top level");
}

TEST(ParseNodeConfigErrors, ExpectedSequence) {
  EXPECT_EQ(parse_error("ServiceConf:\n  StartServices:\n    ClassName: A\n"),
            "node.yaml:3: ServiceConf.StartServices: expected a sequence, got a map");
  EXPECT_CONTAINS(parse_error("ServiceConf:\n  StartServices: Login\n"),
                  "node.yaml:2: ServiceConf.StartServices: expected a sequence, got 'Login'");
}

TEST(ParseNodeConfigErrors, BooleansAreTrueOrFalseOnly) {
  EXPECT_EQ(parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n      Pinned: yes\n"),
            "node.yaml:4: ServiceConf.StartServices[0].Pinned: expected true or false, got 'yes'");
  for (std::string_view bad : {"on", "1", "Y", "no", "off"}) {
    EXPECT_CONTAINS(parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n"
                                "      IsPrimarySecondaryMode: " +
                                std::string{bad} + "\n"),
                    "node.yaml:4: ServiceConf.StartServices[0].IsPrimarySecondaryMode: expected "
                    "true or false");
  }
}

TEST(ParseNodeConfigErrors, IntegersOutOfRange) {
  EXPECT_EQ(parse_error("NodeConf:\n  WorkerThreads: 2000\n"),
            "node.yaml:2: NodeConf.WorkerThreads: '2000' is out of range (expected 0..1024)");
  EXPECT_CONTAINS(parse_error("NodeConf:\n  WorkerThreads: -1\n"),
                  "node.yaml:2: NodeConf.WorkerThreads: '-1' is out of range");
  const std::string prefix = "ServiceConf:\n  StartServices:\n    - ClassName: A\n";
  struct Case {
    std::string body;
    std::string expected;
  };
  const Case cases[] = {
      {"      WorkerConf: {WorkerNum: 0}\n",
       "node.yaml:4: ServiceConf.StartServices[0].WorkerConf.WorkerNum: '0' is out of range "
       "(expected 1..1024)"},
      {"      WorkerConf: {WorkerNum: 1025}\n", "WorkerConf.WorkerNum: '1025' is out of range"},
      {"      WorkerConf: {MaxWorkerNum: 1025}\n",
       "WorkerConf.MaxWorkerNum: '1025' is out of range (expected 0..1024)"},
      {"      WorkerConf: {VirtualWorkerRate: 0}\n",
       "WorkerConf.VirtualWorkerRate: '0' is out of range (expected 1..1000)"},
      {"      WorkerConf: {VirtualWorkerRate: 1001}\n",
       "WorkerConf.VirtualWorkerRate: '1001' is out of range"},
      {"      WorkerConf: {MailboxSize: -1}\n",
       "WorkerConf.MailboxSize: '-1' is out of range (expected >= 0)"},
      {"      ServerId: 2147483648\n",
       "node.yaml:4: ServiceConf.StartServices[0].ServerId: '2147483648' is out of range"},
      {"      Version: 99999999999999999999\n",
       "node.yaml:4: ServiceConf.StartServices[0].Version: '99999999999999999999' is out of range"},
  };
  for (const Case& c : cases) {
    EXPECT_CONTAINS(parse_error(prefix + c.body), c.expected);
  }
}

TEST(ParseNodeConfigErrors, MaxWorkerNumBelowWorkerNum) {
  EXPECT_EQ(parse_error(R"(ServiceConf:
  StartServices:
    - ClassName: A
      WorkerConf:
        MaxWorkerNum: 2
        WorkerNum: 4
)"),
            "node.yaml:5: ServiceConf.StartServices[0].WorkerConf.MaxWorkerNum: 2 is less than "
            "WorkerNum 4 (use 0 to mean the same as WorkerNum)");
}

TEST(ParseNodeConfigErrors, DurationsInvalidOrOutOfRange) {
  EXPECT_CONTAINS(parse_error("NodeConf:\n  TimerTick: fast\n"),
                  "node.yaml:2: NodeConf.TimerTick: invalid duration 'fast'");
  EXPECT_EQ(parse_error("NodeConf:\n  TimerTick: 2s\n"),
            "node.yaml:2: NodeConf.TimerTick: '2s' (2000ms) is out of range (expected 1ms..1s)");
  EXPECT_CONTAINS(parse_error("NodeConf:\n  TimerTick: 500us\n"),
                  "node.yaml:2: NodeConf.TimerTick: '500us' (0ms) is out of range");
  EXPECT_CONTAINS(parse_error("NodeConf:\n  TimerTick: 0\n"), "node.yaml:2: NodeConf.TimerTick:");
  EXPECT_CONTAINS(parse_error("NodeConf:\n\n  CallTimeout: 0s\n"),
                  "node.yaml:3: NodeConf.CallTimeout: '0s' (0ms) is out of range (expected at "
                  "least 1ms)");
  EXPECT_CONTAINS(parse_error("NodeConf:\n  ShutdownTimeout: -5s\n"),
                  "node.yaml:2: NodeConf.ShutdownTimeout: invalid duration '-5s': negative");
  EXPECT_CONTAINS(parse_error("NodeConf:\n  ShutdownTimeout: {a: 1}\n"),
                  "node.yaml:2: NodeConf.ShutdownTimeout: expected a duration");
}

TEST(ParseNodeConfigErrors, BadLevelOverflowAndEmptyStrings) {
  EXPECT_EQ(parse_error("SystemLogger:\n  Level: verbose\n"),
            "node.yaml:2: SystemLogger.Level: unknown level 'verbose' (expected one of: trace, "
            "debug, info, warn, error, critical, off)");
  EXPECT_CONTAINS(parse_error("SystemLogger:\n  Name: \"\"\n"),
                  "node.yaml:2: SystemLogger.Name: must not be empty");
  EXPECT_CONTAINS(parse_error("SystemLogger:\n  Path: [a]\n"),
                  "node.yaml:2: SystemLogger.Path: expected a string, got a sequence");
  EXPECT_CONTAINS(parse_error("NodeConf:\n  NodeId:\n"),
                  "node.yaml:2: NodeConf.NodeId: must not be empty");
  EXPECT_CONTAINS(parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n      "
                              "WorkerConf: {Overflow: drop}\n"),
                  "node.yaml:4: ServiceConf.StartServices[0].WorkerConf.Overflow: unknown overflow "
                  "policy 'drop'");
  EXPECT_CONTAINS(
      parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n      ServiceName: ''\n"),
      "node.yaml:4: ServiceConf.StartServices[0].ServiceName: must not be empty");
}

TEST(ParseNodeConfigErrors, MissingOrEmptyClassName) {
  EXPECT_EQ(parse_error(R"(ServiceConf:
  StartServices:
    - ClassName: A
    - ServiceName: b
      ServiceId: 1
)"),
            "node.yaml:4: ServiceConf.StartServices[1].ClassName: missing required key");
  EXPECT_CONTAINS(parse_error("ServiceConf:\n  StartServices:\n    - ClassName:\n"),
                  "node.yaml:3: ServiceConf.StartServices[0].ClassName: must not be empty");
  EXPECT_CONTAINS(parse_error("ServiceConf:\n  StartServices:\n    - {}\n"),
                  "node.yaml:3: ServiceConf.StartServices[0].ClassName: missing required key");
}

TEST(ParseNodeConfigErrors, DuplicateServiceIdentityNamesBothLines) {
  EXPECT_EQ(parse_error(R"(ServiceConf:
  StartServices:
    - ClassName: Login
      ServiceName: login
      ServiceId: 1
    - ClassName: Room
    - ClassName: Login2
      ServiceName: login
      ServiceId: "1"
)"),
            "node.yaml:7: ServiceConf.StartServices[2]: duplicate service: ServiceName 'login' "
            "with ServiceId '1' is already defined at line 3");
  // The default ServiceName (= ClassName) takes part in the identity too.
  const std::string defaulted = parse_error(R"(ServiceConf:
  StartServices:
    - ClassName: Echo
    - ClassName: Other
      ServiceName: Echo
)");
  EXPECT_CONTAINS(defaulted, "node.yaml:4: ServiceConf.StartServices[1]: duplicate service");
  EXPECT_CONTAINS(defaulted, "line 3");
}

TEST(ParseNodeConfigErrors, DuplicateYamlKeys) {
  EXPECT_EQ(parse_error("NodeConf:\n  NodeId: a\n  WorkerThreads: 1\n  NodeId: b\n"),
            "node.yaml:4: NodeConf.NodeId: duplicate key (first defined at line 2)");
  EXPECT_CONTAINS(parse_error("NodeConf: {}\nServiceConf: {}\nNodeConf: {}\n"),
                  "node.yaml:3: NodeConf: duplicate key (first defined at line 1)");
  EXPECT_CONTAINS(parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n      Params:\n"
                              "        a: 1\n        a: 2\n"),
                  "node.yaml:6: ServiceConf.StartServices[0].Params.a: duplicate key (first "
                  "defined at line 5)");
}

TEST(ParseNodeConfigErrors, NestedParamsRejected) {
  EXPECT_EQ(parse_error(R"(ServiceConf:
  StartServices:
    - ClassName: A
      Params:
        Port: 1
        Hosts: [a, b]
)"),
            "node.yaml:6: ServiceConf.StartServices[0].Params.Hosts: expected a scalar value, got "
            "a sequence (Params values cannot be nested)");
  EXPECT_CONTAINS(parse_error("ServiceConf:\n  StartServices:\n    - ClassName: A\n      Params:\n"
                              "        Db:\n          Host: x\n"),
                  "node.yaml:6: ServiceConf.StartServices[0].Params.Db: expected a scalar value, "
                  "got a map");
}

TEST(ParseNodeConfigErrors, NonScalarKey) {
  EXPECT_CONTAINS(parse_error("NodeConf:\n  ? [a, b]\n  : 1\n"),
                  "node.yaml:2: NodeConf: expected a string key, got a sequence");
}

TEST(ParseNodeConfigErrors, MalformedYamlHasLine) {
  const std::string message = parse_error("NodeConf:\n  NodeId: a\n  Workers: [1, 2\n\nX: 1\n");
  EXPECT_CONTAINS(message, "node.yaml:");
  EXPECT_CONTAINS(message, "invalid YAML");
  const std::string indent = parse_error("NodeConf:\n  NodeId: a\n WorkerThreads: 1\n");
  EXPECT_CONTAINS(indent, "node.yaml:3: invalid YAML:");
  const std::string alias = parse_error("NodeConf:\n  NodeId: *missing\n");
  EXPECT_CONTAINS(alias, "node.yaml:2: invalid YAML:");
}

TEST(ParseNodeConfigErrors, WindowsLineEndingsKeepLineNumbers) {
  EXPECT_EQ(parse_error("NodeConf:\r\n  NodeId: a\r\n  WorkerThreads: x\r\n"),
            "node.yaml:3: NodeConf.WorkerThreads: expected an integer, got 'x'");
  EXPECT_CONTAINS(
      parse_error("ServiceConf:\r\n  StartServices:\r\n    -\r\n    - ClassName: B\r\n"),
      "node.yaml:3: ServiceConf.StartServices[0]: expected a map");
}

TEST(ParseNodeConfigErrors, MultipleDocumentsRejected) {
  EXPECT_CONTAINS(parse_error("NodeConf: {}\n---\nNodeConf: {}\n"),
                  "node.yaml:3: expected a single YAML document, found 2");
}

// yaml-cpp 0.7 alone loops forever on these, allocating as it goes.
TEST(ParseNodeConfigErrors, MalformedStreamFailsInsteadOfHanging) {
  EXPECT_EQ(parse_error(","), "node.yaml:1: invalid YAML: unexpected token");
  EXPECT_EQ(parse_error(",ype: e\"C"), "node.yaml:1: invalid YAML: unexpected token");
  EXPECT_EQ(parse_error("NodeConf: {}\n---\n,\n"), "node.yaml:3: invalid YAML: unexpected token");
  EXPECT_CONTAINS(parse_error("NodeConf: {}\n---\n---\nNodeConf: {}\n"),
                  "expected a single YAML document, found 3");
}

TEST(ParseNodeConfigErrors, FirstErrorInDocumentOrderWins) {
  EXPECT_CONTAINS(parse_error(R"(NodeConf:
  WorkerThreads: many
  Bogus: 1
SystemLogger:
  Level: loud
)"),
                  "node.yaml:2: NodeConf.WorkerThreads:");
  EXPECT_CONTAINS(parse_error(R"(SystemLogger:
  Level: loud
NodeConf:
  WorkerThreads: many
)"),
                  "node.yaml:2: SystemLogger.Level:");
}

TEST(ParseNodeConfigErrors, EmptySourceNameGetsALabel) {
  Result<NodeConfig> result = parse_node_config("Bogus: 1\n", "");
  ASSERT_FALSE(result.has_value());
  EXPECT_CONTAINS(result.error().message(), "<config>:1: Bogus: unknown key");
}

// --- load_node_config -------------------------------------------------------------------------

TEST(LoadNodeConfig, ReadsExpandsAndRecordsSource) {
  TempDir dir;
  ScopedEnv id(env_name("NODE_ID"), "game-9");
  ScopedEnv threads(env_name("THREADS_UNSET"), nullptr);
  const std::string path =
      dir.write("node.yaml", "NodeConf:\n  NodeId: ${" + id.name() + "}\n  WorkerThreads: ${" +
                                 threads.name() + ":-3}\n  # $$ stays literal\n");
  Result<NodeConfig> config = load_node_config(path);
  ASSERT_TRUE(config.has_value()) << config.error().message();
  EXPECT_EQ(config->node_id, "game-9");
  EXPECT_EQ(config->worker_threads, 3);
  EXPECT_EQ(config->source, path);
}

TEST(LoadNodeConfig, EmptyFileGivesDefaults) {
  TempDir dir;
  const std::string path = dir.write("empty.yaml", "");
  Result<NodeConfig> config = load_node_config(path);
  ASSERT_TRUE(config.has_value()) << config.error().message();
  EXPECT_EQ(config->node_id, "node");
  EXPECT_EQ(config->source, path);
}

TEST(LoadNodeConfig, MissingFileIsIoError) {
  TempDir dir;
  const std::string path = (dir.path() / "absent.yaml").string();
  Result<NodeConfig> config = load_node_config(path);
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().code(), Errc::io_error);
  EXPECT_CONTAINS(config.error().message(), path);
}

TEST(LoadNodeConfig, DirectoryIsIoError) {
  TempDir dir;
  Result<NodeConfig> config = load_node_config(dir.path().string());
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().code(), Errc::io_error);
  EXPECT_CONTAINS(config.error().message(), dir.path().string());
}

TEST(LoadNodeConfig, ErrorsNameThePath) {
  TempDir dir;
  ScopedEnv unset(env_name("LOAD_UNSET"), nullptr);
  const std::string env_path =
      dir.write("env.yaml", "NodeConf:\n  NodeId: x\n  WorkerThreads: ${" + unset.name() + "}\n");
  Result<NodeConfig> env_error = load_node_config(env_path);
  ASSERT_FALSE(env_error.has_value());
  EXPECT_EQ(env_error.error().code(), Errc::invalid_argument);
  EXPECT_EQ(env_error.error().message(),
            env_path + ":3: environment variable " + unset.name() + " is not set");

  const std::string bad_path = dir.write(
      "bad.yaml", "ServiceConf:\n  StartServices:\n    - ClassName: A\n      Pined: true\n");
  Result<NodeConfig> bad = load_node_config(bad_path);
  ASSERT_FALSE(bad.has_value());
  EXPECT_CONTAINS(bad.error().message(),
                  bad_path + ":4: ServiceConf.StartServices[0].Pined: unknown key");
}

TEST(LoadNodeConfig, LineNumbersSurviveExpansion) {
  TempDir dir;
  ScopedEnv level(env_name("LEVEL"), "loud");
  ScopedEnv name(env_name("NAME"), "x");
  const std::string path = dir.write("node.yaml", "SystemLogger:\n  Name: ${" + name.name() +
                                                      "}\n  Level: ${" + level.name() + "}\n");
  Result<NodeConfig> config = load_node_config(path);
  ASSERT_FALSE(config.has_value());
  EXPECT_CONTAINS(config.error().message(), path + ":3: SystemLogger.Level: unknown level 'loud'");
}

// --- ClusterConf ------------------------------------------------------------------------------

TEST(ClusterConf, AbsentMeansLocalMode) {
  auto config = parse_node_config("NodeConf: {NodeId: a}\n", "node.yaml");
  ASSERT_TRUE(config) << config.error().to_string();
  EXPECT_FALSE(config->cluster.enabled);
}

TEST(ClusterConf, EveryKeyAndItsDefaults) {
  auto full = parse_node_config(R"(ClusterConf:
  Name: game
  Secret: s3cret
  ListenAddr: 0.0.0.0:7100
  AdvertiseAddr: 10.0.0.5
  MaxFrameSize: 1048576
  MaxPendingHandshakes: 64
  ETCDConf:
    Endpoints: [127.0.0.1:2379, "[::1]:2379"]
    DialTimeout: 2s
  DiscoveryConf:
    KeyPrefix: /prod/game/
    TTL: 5s
)",
                                "node.yaml");
  ASSERT_TRUE(full) << full.error().to_string();
  const ClusterConfig& c = full->cluster;
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.name, "game");
  EXPECT_EQ(c.secret, "s3cret");
  EXPECT_EQ(c.listen_host, "0.0.0.0");
  EXPECT_EQ(c.listen_port, 7100);
  EXPECT_EQ(c.advertise, "10.0.0.5");
  EXPECT_EQ(c.max_frame, 1048576u);
  EXPECT_EQ(c.max_pending_handshakes, 64u);
  EXPECT_EQ(c.etcd_endpoints, (std::vector<std::string>{"127.0.0.1:2379", "[::1]:2379"}));
  EXPECT_EQ(c.etcd_timeout, std::chrono::milliseconds{2000});
  EXPECT_EQ(c.key_prefix, "/prod/game");  // trailing slashes dropped
  EXPECT_EQ(c.ttl, std::chrono::milliseconds{5000});

  auto minimal = parse_node_config("ClusterConf: {Secret: x}\n", "node.yaml");
  ASSERT_TRUE(minimal) << minimal.error().to_string();
  EXPECT_TRUE(minimal->cluster.enabled);
  EXPECT_EQ(minimal->cluster.name, "ember");
  EXPECT_EQ(minimal->cluster.listen_host, "127.0.0.1");
  EXPECT_EQ(minimal->cluster.listen_port, 0);
  EXPECT_EQ(minimal->cluster.max_frame, 16u << 20);
  EXPECT_EQ(minimal->cluster.max_pending_handshakes, 256u);
  EXPECT_EQ(minimal->cluster.ttl, std::chrono::milliseconds{3000});
  EXPECT_TRUE(minimal->cluster.etcd_endpoints.empty());
}

TEST(ClusterConf, ErrorsNameTheKey) {
  EXPECT_EQ(parse_error("ClusterConf:\n  Name: x\n"),
            "node.yaml:2: ClusterConf.Secret: missing required key (every node of a cluster "
            "shares this secret)");
  EXPECT_EQ(parse_error("ClusterConf:\n  Secret: x\n  ListenAddr: 0.0.0.0:1\n"),
            "node.yaml:2: ClusterConf.AdvertiseAddr: required when ListenAddr is a wildcard "
            "address: other nodes cannot dial '0.0.0.0'");
  EXPECT_EQ(parse_error("ClusterConf:\n  Secret: x\n  ListenAddr: localhost\n"),
            "node.yaml:3: ClusterConf.ListenAddr: expected host:port, got 'localhost'");
  EXPECT_EQ(parse_error("ClusterConf:\n  Secret: x\n  ListenAddr: h:70000\n"),
            "node.yaml:3: ClusterConf.ListenAddr: expected host:port with a port in 0..65535, "
            "got 'h:70000'");
  EXPECT_EQ(parse_error("ClusterConf:\n  Secret: x\n  ETCDConf:\n    Endpoints: [a:1, b]\n"),
            "node.yaml:4: ClusterConf.ETCDConf.Endpoints[1]: expected host:port, got 'b'");
  EXPECT_EQ(parse_error("ClusterConf:\n  Secret: x\n  DiscoveryConf: {TTL: 1500ms}\n"),
            "node.yaml:3: ClusterConf.DiscoveryConf.TTL: must be whole seconds (etcd leases "
            "count seconds), got '1500ms'");
  EXPECT_EQ(parse_error("ClusterConf:\n  Secret: x\n  DiscoveryConf: {KeyPrefix: ember}\n"),
            "node.yaml:3: ClusterConf.DiscoveryConf.KeyPrefix: must start with '/', got 'ember'");
  EXPECT_EQ(parse_error("ClusterConf:\n  Secret: x\n  Port: 1\n"),
            "node.yaml:3: ClusterConf.Port: unknown key (expected one of: Name, Secret, "
            "ListenAddr, AdvertiseAddr, MaxFrameSize, MaxPendingHandshakes, ETCDConf, "
            "DiscoveryConf)");
  EXPECT_EQ(parse_error("ClusterConf:\n  Secret: x\n  MaxPendingHandshakes: 0\n"),
            "node.yaml:3: ClusterConf.MaxPendingHandshakes: '0' is out of range (expected "
            "1..65536)");
  EXPECT_EQ(parse_error("ClusterConf:\n  Secret: x\n  MaxPendingHandshakes: 65537\n"),
            "node.yaml:3: ClusterConf.MaxPendingHandshakes: '65537' is out of range (expected "
            "1..65536)");
  EXPECT_EQ(parse_error("ClusterConf:\n  Secret: x\n  MaxPendingHandshakes: lots\n"),
            "node.yaml:3: ClusterConf.MaxPendingHandshakes: expected an integer, got 'lots'");
}

// --- EventBusConf -----------------------------------------------------------------------------

TEST(EventBusConf, BackendFollowsClusterConfWhenAbsent) {
  auto local = parse_node_config("NodeConf: {NodeId: a}\n", "node.yaml");
  ASSERT_TRUE(local) << local.error().to_string();
  EXPECT_EQ(local->events.backend, EventBackend::automatic);
  EXPECT_EQ(event_backend(*local), EventBackend::local);
  auto clustered = parse_node_config("ClusterConf: {Secret: x}\n", "node.yaml");
  ASSERT_TRUE(clustered) << clustered.error().to_string();
  EXPECT_EQ(event_backend(*clustered), EventBackend::cluster);
  auto forced =
      parse_node_config("EventBusConf: {Backend: local}\nClusterConf: {Secret: x}\n", "node.yaml");
  ASSERT_TRUE(forced) << forced.error().to_string();
  EXPECT_EQ(event_backend(*forced), EventBackend::local);
}

TEST(EventBusConf, NatsKeysAndTheirDefaults) {
  auto full = parse_node_config(R"(EventBusConf:
  Backend: nats
  NatsConf:
    Endpoints: [nats://127.0.0.1:4222, 10.0.0.2:4222]
    UserName: u
    Password: p
    Token: t
    GlobalPrefix: game.global
    ServerPrefix: game.zone
    Timeout: 3s
    ReconnectWait: 250ms
    ReconnectBufSize: 1048576
    PendingLimit: 5000
)",
                                "node.yaml");
  ASSERT_TRUE(full) << full.error().to_string();
  EXPECT_EQ(event_backend(*full), EventBackend::nats);
  const NatsConfig& n = full->events.nats;
  EXPECT_EQ(n.endpoints, (std::vector<std::string>{"nats://127.0.0.1:4222", "10.0.0.2:4222"}));
  EXPECT_EQ(n.user, "u");
  EXPECT_EQ(n.password, "p");
  EXPECT_EQ(n.token, "t");
  EXPECT_EQ(n.global_prefix, "game.global");
  EXPECT_EQ(n.server_prefix, "game.zone");
  EXPECT_EQ(n.timeout, std::chrono::milliseconds{3000});
  EXPECT_EQ(n.reconnect_wait, std::chrono::milliseconds{250});
  EXPECT_EQ(n.reconnect_buffer, 1048576);
  EXPECT_EQ(n.pending_limit, 5000);

  auto minimal =
      parse_node_config("EventBusConf: {Backend: nats, NatsConf: {Endpoints: [h:1]}}\n", "n.yaml");
  ASSERT_TRUE(minimal) << minimal.error().to_string();
  EXPECT_EQ(minimal->events.nats.global_prefix, "event.global");
  EXPECT_EQ(minimal->events.nats.server_prefix, "event.server");
  EXPECT_EQ(minimal->events.nats.timeout, std::chrono::milliseconds{2000});
  EXPECT_EQ(minimal->events.nats.pending_limit, 1'000'000);
}

TEST(EventBusConf, ErrorsNameTheKey) {
  EXPECT_EQ(parse_error("EventBusConf:\n  Backend: kafka\n"),
            "node.yaml:2: EventBusConf.Backend: unknown backend 'kafka' (expected cluster, nats "
            "or local)");
  EXPECT_EQ(parse_error("EventBusConf:\n  Backend: cluster\n"),
            "node.yaml:2: EventBusConf.Backend: \"cluster\" needs a ClusterConf section (use "
            "\"local\" or \"nats\" without one)");
  EXPECT_EQ(parse_error("EventBusConf:\n  Backend: nats\n"),
            "node.yaml:2: EventBusConf.NatsConf.Endpoints: missing: Backend \"nats\" needs "
            "NatsConf.Endpoints");
  EXPECT_EQ(parse_error("EventBusConf:\n  Backend: nats\n  NatsConf: {Endpoints: []}\n"),
            "node.yaml:2: EventBusConf.NatsConf.Endpoints: must list at least one NATS server");
  EXPECT_EQ(parse_error("EventBusConf:\n  NatsConf:\n    GlobalPrefix: event.>\n"),
            "node.yaml:3: EventBusConf.NatsConf.GlobalPrefix: expected a subject prefix such as "
            "\"event.global\" (no wildcards, spaces or leading/trailing dots), got 'event.>'");
  EXPECT_EQ(parse_error("EventBusConf:\n  NatsConf:\n    Endpoints: [\"a:1, b:2\"]\n"),
            "node.yaml:3: EventBusConf.NatsConf.Endpoints[0]: expected one server per item "
            "(nats://host:port), got 'a:1, b:2'");
  EXPECT_CONTAINS(parse_error("EventBusConf:\n  NatsConf:\n    Url: x\n"),
                  "node.yaml:3: EventBusConf.NatsConf.Url: unknown key");
}

// --- GateConf ---------------------------------------------------------------------------------

TEST(GateConf, AbsentMeansNoGatewayAndKeysHaveDefaults) {
  auto absent = ember::parse_node_config("NodeConf: {NodeId: n}\n", "node.yaml");
  ASSERT_TRUE(absent) << absent.error().to_string();
  EXPECT_FALSE(absent->gate.enabled);

  auto cfg = ember::parse_node_config(
      "GateConf:\n  WebSocketAddr: 127.0.0.1:0\n  Login: auth.RpcLogin\n"
      "  Routes: [lobby.*, room.RpcMove]\n",
      "node.yaml");
  ASSERT_TRUE(cfg) << cfg.error().to_string();
  const ember::GateConfig& gate = cfg->gate;
  EXPECT_TRUE(gate.enabled);
  EXPECT_EQ(gate.websocket_addr, "127.0.0.1:0");
  EXPECT_EQ(gate.websocket_path, "/ws");
  EXPECT_EQ(gate.tcp_addr, "");
  EXPECT_EQ(gate.login, "auth.RpcLogin");
  EXPECT_EQ(gate.routes, (std::vector<std::string>{"lobby.*", "room.RpcMove"}));
  EXPECT_EQ(gate.max_frame, 64u << 10);
  EXPECT_EQ(gate.handshake_timeout, std::chrono::seconds(10));
  EXPECT_EQ(gate.io_threads, 1);
}

TEST(GateConf, EveryKey) {
  auto cfg = ember::parse_node_config(
      "GateConf:\n  WebSocketAddr: 0.0.0.0:7000\n  WebSocketPath: /game\n  TcpAddr: 0.0.0.0:7001\n"
      "  Login: auth.RpcLogin\n  Routes: [lobby.*]\n  StaticDir: /\n"
      "  AllowedOrigins: [https://game.example.com]\n  IoThreads: 2\n  MaxConnections: 5\n"
      "  MaxFrameBytes: 1024\n  RequestsPerSecond: 10\n  RequestBurst: 20\n  MaxInFlight: 4\n"
      "  SendQueueBytes: 4096\n  HandshakeTimeout: 2s\n  Heartbeat: 1s\n  IdleTimeout: 3s\n"
      "  RequestTimeout: 250ms\n  DrainTimeout: 30s\n"
      "  PublicUrls: [wss://eu1.example.com/game, tcp://10.0.0.5:7001]\n"
      "  ResumeWindow: 45s\n  ResumeBufferBytes: 65536\n",
      "node.yaml");
  ASSERT_TRUE(cfg) << cfg.error().to_string();
  const ember::GateConfig& gate = cfg->gate;
  EXPECT_EQ(gate.drain_timeout, std::chrono::seconds(30));
  EXPECT_EQ(gate.resume_window, std::chrono::seconds(45));
  EXPECT_EQ(gate.resume_buffer_bytes, 65536u);
  EXPECT_EQ(gate.public_urls,
            (std::vector<std::string>{"wss://eu1.example.com/game", "tcp://10.0.0.5:7001"}));
  EXPECT_EQ(gate.websocket_path, "/game");
  EXPECT_EQ(gate.tcp_addr, "0.0.0.0:7001");
  EXPECT_EQ(gate.static_dir, "/");
  EXPECT_EQ(gate.allowed_origins, std::vector<std::string>{"https://game.example.com"});
  EXPECT_EQ(gate.io_threads, 2);
  EXPECT_EQ(gate.max_connections, 5u);
  EXPECT_EQ(gate.max_frame, 1024u);
  EXPECT_EQ(gate.requests_per_second, 10u);
  EXPECT_EQ(gate.request_burst, 20u);
  EXPECT_EQ(gate.max_in_flight, 4u);
  EXPECT_EQ(gate.send_queue_bytes, 4096u);
  EXPECT_EQ(gate.handshake_timeout, std::chrono::seconds(2));
  EXPECT_EQ(gate.heartbeat, std::chrono::seconds(1));
  EXPECT_EQ(gate.idle_timeout, std::chrono::seconds(3));
  EXPECT_EQ(gate.request_timeout, std::chrono::milliseconds(250));
}

TEST(GateConf, ErrorsNameTheKey) {
  const std::string ok = "  Login: auth.RpcLogin\n  Routes: [lobby.*]\n";
  EXPECT_EQ(parse_error("GateConf:\n" + ok),
            "node.yaml:2: GateConf: no listener: set WebSocketAddr, TcpAddr or both");
  EXPECT_EQ(parse_error("GateConf:\n  WebSocketAddr: 127.0.0.1:0\n  Routes: [lobby.*]\n"),
            "node.yaml:2: GateConf.Login: missing required key (the backend method that checks "
            "a client's token)");
  EXPECT_EQ(parse_error("GateConf:\n  WebSocketAddr: 127.0.0.1:0\n  Login: auth\n"
                        "  Routes: [lobby.*]\n"),
            "node.yaml:3: GateConf.Login: expected \"service.Method\", got 'auth'");
  EXPECT_EQ(parse_error("GateConf:\n  WebSocketAddr: 127.0.0.1:0\n  Login: a.B\n"
                        "  Routes: [lobby.*, 'room.']\n"),
            "node.yaml:4: GateConf.Routes[1]: expected \"service.Method\" or \"service.*\", got "
            "'room.'");
  EXPECT_EQ(
      parse_error("GateConf:\n  WebSocketAddr: 127.0.0.1:0\n" + ok + "  PublicUrls: [http://x]\n"),
      "node.yaml:5: GateConf.PublicUrls[0]: expected a URL such as "
      "\"wss://game.example.com/ws\" or \"tcp://10.0.0.5:7100\" (ws, wss, tcp or tls), got "
      "'http://x'");
  EXPECT_EQ(parse_error("GateConf:\n  WebSocketAddr: 127.0.0.1\n" + ok),
            "node.yaml:2: GateConf.WebSocketAddr: expected host:port, got '127.0.0.1'");
  EXPECT_EQ(parse_error("GateConf:\n  WebSocketAddr: 127.0.0.1:0\n" + ok +
                        "  Heartbeat: 30s\n  IdleTimeout: 20s\n"),
            "node.yaml:6: GateConf.IdleTimeout: must be longer than Heartbeat (a client that "
            "heartbeats on time would be closed), got 20000ms <= 30000ms");
  EXPECT_EQ(parse_error("GateConf:\n  TcpAddr: 127.0.0.1:0\n" + ok + "  StaticDir: /\n"),
            "node.yaml:2: GateConf: StaticDir, AllowedOrigins and WebSocketPath need "
            "WebSocketAddr");
  EXPECT_EQ(
      parse_error("GateConf:\n  WebSocketAddr: 127.0.0.1:0\n" + ok + "  StaticDir: /no/such/dir\n"),
      "node.yaml:5: GateConf.StaticDir: no such directory: '/no/such/dir'");
  EXPECT_EQ(parse_error("GateConf:\n  WebSocketAddr: 127.0.0.1:0\n" + ok +
                        "  TlsConf: {CertFile: /no/cert.pem, KeyFile: /no/key.pem}\n"),
            "node.yaml:5: GateConf.TlsConf.CertFile: no such file: '/no/cert.pem'");
  EXPECT_EQ(parse_error("GateConf:\n  WebSocketAddr: 127.0.0.1:0\n" + ok +
                        "  AllowedOrigins: [game.example.com]\n"),
            "node.yaml:5: GateConf.AllowedOrigins[0]: expected an origin such as "
            "\"https://game.example.com\" (scheme, host, optional port, no path), got "
            "'game.example.com'");
  EXPECT_EQ(parse_error("GateConf:\n  WebSocketAddr: 127.0.0.1:0\n" + ok + "  MaxFrameBytes: 10\n"),
            "node.yaml:5: GateConf.MaxFrameBytes: '10' is out of range (expected 64..67108864)");
}

}  // namespace
}  // namespace ember
