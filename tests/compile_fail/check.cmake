# Compiles one file that must NOT compile, and checks that the compiler says what Ember means it
# to say, first: a file that compiles, fails for another reason or buries the message under other
# errors fails the test.
#   cmake -DCXX=... -DSOURCE=... -DFLAGS="-I...;-I..." -DEXPECT=<regex> -DMAX_ERRORS=<n>
#         [-DSTD=c++17] [-DFIRST_ONLY=1] -P check.cmake
# FIRST_ONLY: the message must be the first error; what a compiler says after it does not count.
if(NOT DEFINED STD)
  set(STD c++20)
endif()
execute_process(
  COMMAND ${CXX} -std=${STD} -fsyntax-only ${FLAGS} ${SOURCE}
  RESULT_VARIABLE result
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)
if(result EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "${SOURCE}: the compiler did not say /${EXPECT}/. It said:\n${out}")
endif()
string(REGEX MATCHALL "error: " errors "${out}")
list(LENGTH errors count)
string(REGEX MATCH "error: [^\n]*" first "${out}")
if(FIRST_ONLY)
  if(NOT first MATCHES "${EXPECT}")
    message(FATAL_ERROR "${SOURCE}: the first error is not /${EXPECT}/. It said:\n${out}")
  endif()
elseif(count GREATER MAX_ERRORS)
  message(FATAL_ERROR "${SOURCE}: ${count} errors, expected at most ${MAX_ERRORS}:\n${out}")
endif()
message(STATUS "${SOURCE}: ${count} error(s), the first: ${first}")
