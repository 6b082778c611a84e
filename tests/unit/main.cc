// Entry point of the unit tests: libsodium must be initialised before any
// test touches hashing, randomness or tokens.
#include <gtest/gtest.h>

#include "common/auth.h"

int main(int argc, char** argv) {
  chat4all::auth::init_crypto();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
