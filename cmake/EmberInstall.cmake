# cmake --install: headers, one static archive per component, the CMake package (config, version,
# one targets file per component, ember_add_protos) and pkg-config files.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(EMBER_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ember)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ember DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The gateway's public messages: a login method's request and reply, session events.
install(FILES ${PROJECT_BINARY_DIR}/src/ember/gate.pb.h ${PROJECT_SOURCE_DIR}/proto/ember/gate.proto
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ember)

# One export set per component, so that a project asking for core alone needs neither gRPC nor
# libnats installed.
foreach(component core wire cluster nats gate_proto gate admin client sim)
  install(TARGETS ember_${component} EXPORT ember-${component}
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT ember-${component} NAMESPACE ember:: DESTINATION ${EMBER_CMAKE_DIR}
          FILE ember-${component}-targets.cmake)
endforeach()
install(TARGETS ember EXPORT ember-all)
install(EXPORT ember-all NAMESPACE ember:: DESTINATION ${EMBER_CMAKE_DIR}
        FILE ember-all-targets.cmake)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ember-config.cmake.in
  ${PROJECT_BINARY_DIR}/ember-config.cmake INSTALL_DESTINATION ${EMBER_CMAKE_DIR})
# 0.x: a minor release may change the API, so 0.2 does not satisfy a request for 0.3 or 0.1.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ember-config-version.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/ember-config.cmake
  ${PROJECT_BINARY_DIR}/ember-config-version.cmake
  ${PROJECT_SOURCE_DIR}/cmake/EmberProtos.cmake
  DESTINATION ${EMBER_CMAKE_DIR})

# pkg-config: relative to the .pc file, so an installed tree can be moved.
set(EMBER_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH EMBER_PC_PREFIX_FROM_PCDIR /prefix/${EMBER_PC_DIR} /prefix)
foreach(pc ember-core ember-cluster ember-nats ember-gate ember-admin ember)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/pkgconfig/${pc}.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc DESTINATION ${EMBER_PC_DIR})
endforeach()
