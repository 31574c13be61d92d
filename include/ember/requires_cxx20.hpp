// SPDX-License-Identifier: Apache-2.0
#pragma once

// Every public header includes this first, before any standard header, so that a translation
// unit built as C++17 (a pkg-config or hand-written build that forgot the flag) stops at one line
// that says what is wrong, not at errors about coroutines and concepts deep in other headers.
#if __cplusplus < 202002L
#error \
    "Ember needs C++20: compile with -std=c++20 (its CMake package sets it; with pkg-config, pass it yourself)"
#endif
