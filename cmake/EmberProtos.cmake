# ember_add_protos(<target> FILES <file.proto>... [IMPORT_DIRS <dir>...])
#
# Compiles your .proto files with protoc and adds the generated C++ to <target>. The target then
# links protobuf, and it and whatever links it can include the generated headers:
#
#   add_executable(game_node main.cpp)
#   ember_add_protos(game_node FILES proto/lobby.proto)   # main.cpp: #include "lobby.pb.h"
#
# IMPORT_DIRS are the roots protoc resolves `import "..."` against, and the header path follows
# the file's place under the first root that holds it: with IMPORT_DIRS proto, the file
# proto/game/lobby.proto gives "game/lobby.pb.h". Without IMPORT_DIRS each file's own directory
# is its root. Works the same with find_package(ember) and with add_subdirectory. Uses the keyword
# form of target_link_libraries (PUBLIC), like the rest of a modern CMake project.
function(ember_add_protos target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "FILES;IMPORT_DIRS")
  if(NOT TARGET ${target})
    message(FATAL_ERROR "ember_add_protos: there is no target '${target}'; "
                        "call add_executable or add_library first")
  endif()
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "ember_add_protos(${target}): unexpected '${arg_UNPARSED_ARGUMENTS}'; "
                        "usage: ember_add_protos(<target> FILES <a.proto>... [IMPORT_DIRS <dir>...])")
  endif()
  if(NOT arg_FILES)
    message(FATAL_ERROR "ember_add_protos(${target}): no FILES given")
  endif()
  if(NOT TARGET protobuf::libprotobuf OR NOT TARGET protobuf::protoc)
    find_package(Protobuf REQUIRED)
  endif()

  set(roots)
  foreach(dir IN LISTS arg_IMPORT_DIRS)
    get_filename_component(dir "${dir}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    list(APPEND roots "${dir}")
  endforeach()
  if(NOT roots)
    foreach(file IN LISTS arg_FILES)
      get_filename_component(file "${file}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
      get_filename_component(dir "${file}" DIRECTORY)
      list(APPEND roots "${dir}")
    endforeach()
  endif()
  list(REMOVE_DUPLICATES roots)
  set(proto_path_args)
  foreach(dir IN LISTS roots)
    list(APPEND proto_path_args "--proto_path=${dir}")
  endforeach()

  set(out_dir "${CMAKE_CURRENT_BINARY_DIR}/ember_protos/${target}")
  file(MAKE_DIRECTORY "${out_dir}")
  foreach(file IN LISTS arg_FILES)
    get_filename_component(abs "${file}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    if(NOT EXISTS "${abs}")
      message(FATAL_ERROR "ember_add_protos(${target}): ${abs} does not exist")
    endif()
    set(rel "")
    foreach(dir IN LISTS roots)
      file(RELATIVE_PATH candidate "${dir}" "${abs}")
      if(NOT candidate MATCHES "^\\.\\./")
        set(rel "${candidate}")
        break()
      endif()
    endforeach()
    if(rel STREQUAL "")
      message(FATAL_ERROR "ember_add_protos(${target}): ${abs} is under none of IMPORT_DIRS "
                          "(${roots})")
    endif()
    string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
    set(outputs "${out_dir}/${stem}.pb.cc" "${out_dir}/${stem}.pb.h")
    add_custom_command(OUTPUT ${outputs}
      COMMAND protobuf::protoc ${proto_path_args} "--cpp_out=${out_dir}" "${abs}"
      DEPENDS "${abs}"
      COMMENT "Generating C++ from ${rel}"
      VERBATIM)
    target_sources(${target} PRIVATE ${outputs})
  endforeach()
  target_include_directories(${target} PUBLIC "$<BUILD_INTERFACE:${out_dir}>")
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf)
endfunction()
