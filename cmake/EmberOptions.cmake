# Warnings and sanitizers, applied through the ember_options interface target.
add_library(ember_options INTERFACE)
target_compile_options(ember_options INTERFACE -Wall -Wextra -Wpedantic)
if(EMBER_WERROR)
  target_compile_options(ember_options INTERFACE -Werror)
endif()
if(EMBER_SANITIZERS)
  string(REPLACE "," ";" _ember_sanitizers "${EMBER_SANITIZERS}")
  foreach(_san IN LISTS _ember_sanitizers)
    add_compile_options(-fsanitize=${_san})
    add_link_options(-fsanitize=${_san})
  endforeach()
  add_compile_options(-fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  if(EMBER_SANITIZERS MATCHES "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # Boost.Asio fences its handlers with std::atomic_thread_fence, which g++ warns TSan cannot
    # see; its queues synchronize with mutexes TSan does see, so the warning is noise.
    add_compile_options(-Wno-tsan)
  endif()
endif()
