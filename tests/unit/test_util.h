// Small helpers shared by the unit tests.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include "schema/wire.h"

namespace chat4all::unit {

// A fresh directory under /tmp (mkdtemp), removed with everything in it on
// destruction.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/chat4all-unit-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_text_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

inline std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every field of two stored messages is the same.
inline void expect_same_message(const wire::StoredMessage& a, const wire::StoredMessage& b) {
  EXPECT_EQ(a.conversation_id, b.conversation_id);
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.message_id, b.message_id);
  EXPECT_EQ(a.sender_id, b.sender_id);
  EXPECT_EQ(a.recipients, b.recipients);
  EXPECT_EQ(a.payload.type, b.payload.type);
  EXPECT_EQ(a.payload.text, b.payload.text);
  EXPECT_EQ(a.payload.file_id, b.payload.file_id);
  EXPECT_EQ(a.received_at_ms, b.received_at_ms);
  EXPECT_EQ(a.stored_at_ms, b.stored_at_ms);
  EXPECT_EQ(a.channels, b.channels);
  EXPECT_EQ(a.metadata, b.metadata);
  EXPECT_EQ(a.erased, b.erased);
}

}  // namespace chat4all::unit
