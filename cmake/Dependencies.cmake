# Every dependency comes from Debian packages (scripts/setup.sh installs them).
find_package(Threads REQUIRED)
find_package(Protobuf REQUIRED)          # module mode: Debian ships no protobuf CMake config
# gRPC's config fails unless protobuf-compiler-grpc is installed (it checks for its plugins).
find_package(gRPC CONFIG REQUIRED)
find_package(fmt CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(yaml-cpp CONFIG REQUIRED)   # target: yaml-cpp (0.7 has no namespace)
find_package(CLI11 CONFIG REQUIRED)
# The client gateway: Boost.Beast and Boost.Asio are header-only (libboost-dev).
find_package(Boost 1.74 CONFIG REQUIRED)
# The admin listener's JSON (header-only, nlohmann-json3-dev).
find_package(nlohmann_json 3 CONFIG REQUIRED)
if(EMBER_BUILD_TESTS OR EMBER_BUILD_EXAMPLES)
  find_package(GTest CONFIG REQUIRED)
  include(GoogleTest)
endif()
if(EMBER_BUILD_BENCHMARKS)
  find_package(benchmark CONFIG REQUIRED)
endif()
