// Query strings, percent-decoding and list paging: nodes/frontend/validation_support.h.
#include "nodes/frontend/validation_support.h"

#include <gtest/gtest.h>

#include "tests/unit/validation_test_util.h"

namespace chat4all::frontend {
namespace {

using testing::expect_api_error;
using testing::expect_ok;

TEST(PercentDecodeTest, DecodesEscapesAndRefusesBrokenOnes) {
  EXPECT_EQ(percent_decode("a%20b%2Fc"), "a b/c");
  EXPECT_EQ(percent_decode("%41%6a"), "Aj");
  EXPECT_EQ(percent_decode("plain+text"), "plain+text");  // '+' is not a space in paths
  EXPECT_EQ(percent_decode(""), "");
  EXPECT_FALSE(percent_decode("%"));
  EXPECT_FALSE(percent_decode("%4"));
  EXPECT_FALSE(percent_decode("a%zz"));
  EXPECT_FALSE(percent_decode("abc%2"));
}

TEST(ParseQueryTest, PairsInOrder) {
  const auto params = expect_ok(parse_query("a=1&&b=x%20y&flag&c="));
  ASSERT_EQ(params.size(), 4u);
  EXPECT_EQ(params[0], (std::pair<std::string, std::string>{"a", "1"}));
  EXPECT_EQ(params[1], (std::pair<std::string, std::string>{"b", "x y"}));
  EXPECT_EQ(params[2], (std::pair<std::string, std::string>{"flag", ""}));
  EXPECT_EQ(params[3], (std::pair<std::string, std::string>{"c", ""}));
  expect_api_error(parse_query("a=%zz"), 400, "invalid_field", "a");
}

TEST(PageQueryTest, DefaultsBoundsAndExtra) {
  PageQuery page = expect_ok(parse_page_query(""));
  EXPECT_EQ(page.limit, 50u);
  EXPECT_TRUE(page.after.empty());
  page = expect_ok(parse_page_query("after=bob&limit=200"));
  EXPECT_EQ(page.after, "bob");
  EXPECT_EQ(page.limit, 200u);
  expect_api_error(parse_page_query("limit=201"), 400, "invalid_field", "limit");
  expect_api_error(parse_page_query("limit=0"), 400, "invalid_field", "limit");
  expect_api_error(parse_page_query("after=a%20b"), 400, "invalid_field", "after");
  expect_api_error(parse_page_query("user_id=bob"), 400, "unknown_parameter", "user_id");
  EXPECT_EQ(expect_ok(parse_page_query("user_id=bob", "user_id")).extra, "bob");
}

TEST(FieldReadersTest, NameListDropsDuplicatesAndNamesTheBadItem) {
  const auto object = nlohmann::json::parse(R"({"m":["a","b","a"],"bad":["a",3],"e":[]})");
  std::vector<std::string> out;
  EXPECT_FALSE(read_name_list(object, "m", true, 5, out));
  EXPECT_EQ(out, (std::vector<std::string>{"a", "b"}));
  auto error = read_name_list(object, "bad", true, 5, out);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->field, "bad[1]");
  EXPECT_EQ(read_name_list(object, "e", true, 5, out)->field, "e");
  EXPECT_EQ(read_name_list(object, "m", true, 2, out)->field, "m");
  EXPECT_EQ(read_name_list(object, "absent", true, 5, out)->code, "missing_field");
  EXPECT_FALSE(read_name_list(object, "absent", false, 5, out));
}

TEST(FieldReadersTest, StringLengthsAreBytes) {
  const auto object = nlohmann::json::parse(R"({"s":"\u00e9\u00e9","n":5})");
  std::string out;
  EXPECT_FALSE(read_string(object, "s", true, {4, 4}, out));
  EXPECT_EQ(out.size(), 4u);
  EXPECT_EQ(read_string(object, "s", true, {1, 3}, out)->field, "s");
  EXPECT_EQ(read_string(object, "n", true, {1, 3}, out)->code, "invalid_field");
  EXPECT_EQ(read_string(object, "n", true, {1, 3}, out, "outer.n")->field, "outer.n");
}

TEST(FieldReadersTest, Printable) {
  EXPECT_TRUE(is_printable("Alice Ünal +55 11"));
  EXPECT_FALSE(is_printable("a\nb"));
  EXPECT_FALSE(is_printable(std::string("a\0b", 3)));
  EXPECT_FALSE(is_printable("\x7f"));
}

}  // namespace
}  // namespace chat4all::frontend
