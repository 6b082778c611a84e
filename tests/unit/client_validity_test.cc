// The frontend's view of which API-made service clients still exist
// (nodes/frontend/client_validity.h): deleting a client revokes its tokens.
#include "nodes/frontend/client_validity.h"

#include <gtest/gtest.h>

namespace chat4all::frontend {
namespace {

using Verdict = ClientValidityCache::Verdict;

TEST(ClientValidityCacheTest, AnExistingClientsTokensPassUntilTheEntryIsOld) {
  ClientValidityCache cache(/*entries_max=*/16, /*ttl_ms=*/2000);
  EXPECT_EQ(cache.check("t/cl_1", 100, 1'000'000), Verdict::kUnknown);
  cache.store("t/cl_1", 90'000, 1'000'000);  // created at 90 s
  EXPECT_EQ(cache.check("t/cl_1", 100, 1'000'000), Verdict::kValid);
  EXPECT_EQ(cache.check("t/cl_1", 100, 1'001'999), Verdict::kValid);
  EXPECT_EQ(cache.check("t/cl_1", 100, 1'002'000), Verdict::kUnknown);
}

TEST(ClientValidityCacheTest, ADeletedClientsTokensAreRevoked) {
  ClientValidityCache cache(16, 2000);
  cache.store("t/cl_1", std::nullopt, 5000);
  EXPECT_EQ(cache.check("t/cl_1", 100, 5000), Verdict::kRevoked);
  // Forgotten (deleted through this frontend): read again.
  cache.forget("t/cl_1");
  EXPECT_EQ(cache.check("t/cl_1", 100, 5000), Verdict::kUnknown);
}

TEST(ClientValidityCacheTest, ATokenOlderThanItsClientIsRevoked) {
  ClientValidityCache cache(16, 2000);
  cache.store("t/cl_1", 90'500, 100'000);  // made again at 90.5 s
  EXPECT_EQ(cache.check("t/cl_1", 89, 100'000), Verdict::kRevoked);
  EXPECT_EQ(cache.check("t/cl_1", 90, 100'000), Verdict::kValid);  // the same second
  EXPECT_EQ(cache.check("t/cl_1", 91, 100'000), Verdict::kValid);
}

TEST(ClientValidityCacheTest, StartsOverAtItsBound) {
  ClientValidityCache cache(/*entries_max=*/2, 2000);
  cache.store("a", 0, 0);
  cache.store("b", 0, 0);
  cache.store("b", 0, 1);  // an entry already held does not count again
  EXPECT_EQ(cache.check("a", 1, 1), Verdict::kValid);
  cache.store("c", 0, 1);
  EXPECT_EQ(cache.check("a", 1, 1), Verdict::kUnknown);
  EXPECT_EQ(cache.check("b", 1, 1), Verdict::kUnknown);
  EXPECT_EQ(cache.check("c", 1, 1), Verdict::kValid);
}

}  // namespace
}  // namespace chat4all::frontend
