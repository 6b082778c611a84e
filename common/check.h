// CHAT4ALL_CHECK(condition, invariant): an invariant that must never break, checked in every
// build. assert() is compiled out where it matters (RelWithDebInfo defines NDEBUG); a broken
// invariant means the state is already wrong, and going on would spread it (a slot counted
// twice, a request answered twice), so it aborts, naming the invariant, the condition, and
// where.
//
// Cost: one predictable branch; the message is built only on failure. Keep the condition
// cheap (no lookups on the hot path that the code would not do anyway).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace chat4all::detail {

[[noreturn]] inline void check_failed(const char* invariant, const char* condition,
                                      const char* file, int line) {
  std::fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", file, line, invariant, condition);
  std::fflush(stderr);
  std::abort();
}

}  // namespace chat4all::detail

#define CHAT4ALL_CHECK(condition, invariant)                                       \
  do {                                                                             \
    if (!(condition)) [[unlikely]]                                                 \
      ::chat4all::detail::check_failed(invariant, #condition, __FILE__, __LINE__); \
  } while (false)
