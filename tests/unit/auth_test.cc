// Tokens, token keys and password hashes: common/auth.h.
#include "common/auth.h"

#include <gtest/gtest.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/test_util.h"

namespace chat4all::auth {
namespace {

using unit::TempDir;

constexpr std::int64_t kNow = 1700000000;

TokenKey key_of(unsigned char fill) {
  TokenKey key;
  key.fill(fill);
  return key;
}

// Builds a token from raw header and claims JSON, signed with `key` exactly as
// HS256 prescribes (HMAC-SHA256 over "b64(header).b64(claims)").
std::string craft(const std::string& header_json, const std::string& claims_json,
                  const TokenKey& key) {
  const std::string input = base64url_encode(header_json) + "." + base64url_encode(claims_json);
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, key.data(), key.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(input.data()),
                                input.size());
  crypto_auth_hmacsha256_final(&state, mac);
  return input + "." + base64url_encode(std::string(reinterpret_cast<char*>(mac), sizeof mac));
}

const std::string kHs256 = R"({"alg":"HS256","typ":"JWT"})";

std::vector<std::string> split(const std::string& token) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const auto dot = token.find('.', start);
    parts.push_back(token.substr(start, dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

TEST(TokenTest, IssueAndVerifyRoundTrip) {
  const TokenSigner signer(key_of(1));
  const std::string token = signer.issue("alice", kNow, 3600);
  EXPECT_EQ(split(token).size(), 3u);
  const VerifiedToken verified = signer.verify(token, kNow + 10);
  ASSERT_TRUE(verified.ok()) << token_error_message(verified.error);
  EXPECT_EQ(verified.claims.subject, "alice");
  EXPECT_EQ(verified.claims.issued_at_s, kNow);
  EXPECT_EQ(verified.claims.expires_at_s, kNow + 3600);
}

TEST(TokenTest, SubjectIsCarriedVerbatim) {
  const TokenSigner signer(key_of(1));
  for (const std::string subject : {"a", "user@example.com", "quote\"back\\slash", "x.y:z-_@"}) {
    const auto verified = signer.verify(signer.issue(subject, kNow, 60), kNow);
    ASSERT_TRUE(verified.ok()) << subject;
    EXPECT_EQ(verified.claims.subject, subject);
  }
}

TEST(TokenTest, TokenIsAStandardHs256Jwt) {
  const TokenSigner signer(key_of(1));
  const auto parts = split(signer.issue("bob", kNow, 60));
  ASSERT_EQ(parts.size(), 3u);
  const auto header = nlohmann::json::parse(*base64url_decode(parts[0]));
  EXPECT_EQ(header["alg"], "HS256");
  const auto claims = nlohmann::json::parse(*base64url_decode(parts[1]));
  EXPECT_EQ(claims["sub"], "bob");
  EXPECT_EQ(claims["iat"], kNow);
  EXPECT_EQ(claims["exp"], kNow + 60);
  // A token made independently with the same key verifies.
  const std::string crafted = craft(kHs256, R"({"sub":"carol","exp":1700000100})", key_of(1));
  const auto verified = signer.verify(crafted, kNow);
  ASSERT_TRUE(verified.ok()) << token_error_message(verified.error);
  EXPECT_EQ(verified.claims.subject, "carol");
  EXPECT_EQ(verified.claims.issued_at_s, 0);
}

TEST(TokenTest, ExpiryUsesTheInjectedClock) {
  const TokenSigner signer(key_of(2));
  const std::string token = signer.issue("alice", kNow, 100);
  EXPECT_TRUE(signer.verify(token, kNow).ok());
  EXPECT_TRUE(signer.verify(token, kNow + 99).ok());
  EXPECT_EQ(signer.verify(token, kNow + 100).error, TokenError::kExpired);
  const auto late = signer.verify(token, kNow + 100000);
  EXPECT_EQ(late.error, TokenError::kExpired);
  EXPECT_FALSE(late.ok());
}

TEST(TokenTest, AlgorithmNoneIsRefused) {
  const TokenSigner signer(key_of(3));
  const std::string claims = R"({"sub":"alice","exp":1800000000})";
  // Unsigned token: empty signature part.
  const std::string unsigned_token =
      base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + base64url_encode(claims) + ".";
  EXPECT_EQ(signer.verify(unsigned_token, kNow).error, TokenError::kBadAlgorithm);
  // Even with a correct HMAC the header may not pick another algorithm.
  EXPECT_EQ(signer.verify(craft(R"({"alg":"none"})", claims, key_of(3)), kNow).error,
            TokenError::kBadAlgorithm);
  EXPECT_EQ(signer.verify(craft(R"({"alg":"None"})", claims, key_of(3)), kNow).error,
            TokenError::kBadAlgorithm);
}

TEST(TokenTest, OtherAlgorithmsAreRefused) {
  const TokenSigner signer(key_of(3));
  const std::string claims = R"({"sub":"alice","exp":1800000000})";
  for (const std::string header :
       {R"({"alg":"RS256","typ":"JWT"})", R"({"alg":"HS512"})", R"({"alg":"hs256"})",
        R"({"typ":"JWT"})", R"({"alg":256})", R"({"alg":null})", R"({"alg":["HS256"]})"}) {
    EXPECT_EQ(signer.verify(craft(header, claims, key_of(3)), kNow).error,
              TokenError::kBadAlgorithm)
        << header;
  }
}

TEST(TokenTest, TokenOfAnotherKeyIsRefused) {
  const TokenSigner signer(key_of(4));
  const TokenSigner other(key_of(5));
  EXPECT_EQ(signer.verify(other.issue("alice", kNow, 60), kNow).error, TokenError::kBadSignature);
}

TEST(TokenTest, TamperedTokensAreRefused) {
  const TokenSigner signer(key_of(4));
  const std::string token = signer.issue("alice", kNow, 60);
  const auto parts = split(token);

  // A flipped character inside the signature (the first one: every bit of it
  // carries signature data).
  std::string flipped = token;
  const std::size_t signature_start = parts[0].size() + parts[1].size() + 2;
  flipped[signature_start] = flipped[signature_start] == 'A' ? 'B' : 'A';
  EXPECT_EQ(signer.verify(flipped, kNow).error, TokenError::kBadSignature);

  // Claims swapped for others, signature kept.
  const std::string forged =
      parts[0] + "." + base64url_encode(R"({"sub":"admin","exp":1800000000})") + "." + parts[2];
  EXPECT_EQ(signer.verify(forged, kNow).error, TokenError::kBadSignature);

  // Signature of the wrong length.
  EXPECT_EQ(signer.verify(parts[0] + "." + parts[1] + "." + base64url_encode("short"), kNow).error,
            TokenError::kBadSignature);
  EXPECT_EQ(signer.verify(parts[0] + "." + parts[1] + ".", kNow).error, TokenError::kBadSignature);
  // Signature of a longer MAC that begins with the right one.
  const std::string long_signature = *base64url_decode(parts[2]) + "xx";
  EXPECT_EQ(
      signer.verify(parts[0] + "." + parts[1] + "." + base64url_encode(long_signature), kNow).error,
      TokenError::kBadSignature);
}

TEST(TokenTest, MalformedTokensAreRefused) {
  const TokenSigner signer(key_of(6));
  const std::string token = signer.issue("alice", kNow, 60);
  const auto parts = split(token);
  const std::vector<std::string> malformed = {
      "abc",                                        // one part
      parts[0] + "." + parts[1],                    // two parts
      token + "." + parts[2],                       // four parts
      token + ".",                                  // four parts, last empty
      "..",                                         // three empty parts
      "!!!." + parts[1] + "." + parts[2],           // not base64url
      parts[0] + ".a+b/." + parts[2],               // standard base64 alphabet
      parts[0] + "." + parts[1] + "=." + parts[2],  // padding
      parts[0] + "." + parts[1] + "." + parts[2] + " ",
      base64url_encode("not json") + "." + parts[1] + "." + parts[2],
      base64url_encode("[\"HS256\"]") + "." + parts[1] + "." + parts[2],
      // A correctly signed token whose claims are not a JSON object.
      craft(kHs256, "not json", key_of(6)),
      craft(kHs256, "[1,2]", key_of(6)),
      craft(kHs256, "\"sub\"", key_of(6)),
  };
  for (const auto& bad : malformed)
    EXPECT_EQ(signer.verify(bad, kNow).error, TokenError::kMalformed) << "'" << bad << "'";
}

TEST(TokenTest, MissingClaimsAreRefused) {
  const TokenSigner signer(key_of(7));
  const std::vector<std::string> claims = {
      R"({"exp":1800000000})",                  // no sub
      R"({"sub":"alice"})",                     // no exp
      R"({"sub":"","exp":1800000000})",         // empty sub
      R"({"sub":5,"exp":1800000000})",          // sub not a string
      R"({"sub":"alice","exp":"1800000000"})",  // exp not a number
      R"({"sub":"alice","exp":1.8e9})",         // exp not an integer
      R"({"sub":"alice","exp":null})",
      R"({})",
  };
  for (const auto& c : claims)
    EXPECT_EQ(signer.verify(craft(kHs256, c, key_of(7)), kNow).error, TokenError::kMissingClaim)
        << c;
}

TEST(TokenTest, EmptyTokenIsMissing) {
  const TokenSigner signer(key_of(8));
  const auto verified = signer.verify("", kNow);
  EXPECT_EQ(verified.error, TokenError::kMissing);
  EXPECT_FALSE(verified.ok());
}

TEST(TokenTest, ErrorMessagesAreDistinct) {
  std::set<std::string> messages;
  for (TokenError e :
       {TokenError::kNone, TokenError::kMissing, TokenError::kMalformed, TokenError::kBadAlgorithm,
        TokenError::kBadSignature, TokenError::kExpired, TokenError::kMissingClaim}) {
    const std::string message = token_error_message(e);
    EXPECT_FALSE(message.empty());
    messages.insert(message);
  }
  EXPECT_EQ(messages.size(), 7u);
}

TEST(Base64UrlTest, EncodeAndDecode) {
  EXPECT_EQ(base64url_encode(""), "");
  EXPECT_EQ(base64url_encode("f"), "Zg");
  EXPECT_EQ(base64url_encode("foo"), "Zm9v");
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");  // URL-safe alphabet, no padding
  EXPECT_EQ(base64url_decode("-_8"), std::string("\xfb\xff"));
  EXPECT_EQ(base64url_decode("Zm9v"), "foo");
  EXPECT_EQ(base64url_decode(""), "");
  EXPECT_EQ(base64url_decode("Zg=="), std::nullopt);  // padding is not base64url here
  EXPECT_EQ(base64url_decode("+/8"), std::nullopt);   // standard alphabet
  EXPECT_EQ(base64url_decode("Zm9v!"), std::nullopt);
  EXPECT_EQ(base64url_decode("Z"), std::nullopt);  // impossible length
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (std::size_t n = 0; n <= all.size(); n += 17)
    EXPECT_EQ(base64url_decode(base64url_encode(all.substr(0, n))), all.substr(0, n)) << n;
}

// ---- token key file -----------------------------------------------------------

TEST(TokenKeyTest, CreatesA0600FileOnceAndReusesIt) {
  TempDir dir;
  const auto path = dir.path() / "secrets" / "token.key";  // parent does not exist yet
  const TokenKey first = load_or_create_token_key(path);
  ASSERT_TRUE(std::filesystem::exists(path));
  struct stat info {};
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);

  const std::string text = unit::read_text_file(path);
  EXPECT_EQ(text.size(), 65u);  // 64 hex characters and a newline
  EXPECT_EQ(text.find_first_not_of("0123456789abcdef"), 64u);

  const TokenKey second = load_or_create_token_key(path);
  EXPECT_EQ(first, second);
  EXPECT_NE(first, TokenKey{}) << "the key should be random, not zeros";
  // Nothing left over next to the key.
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(path.parent_path())) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "token.key");
  }
  EXPECT_EQ(files, 1u);
}

TEST(TokenKeyTest, DifferentFilesGetDifferentKeys) {
  TempDir dir;
  EXPECT_NE(load_or_create_token_key(dir.path() / "a.key"),
            load_or_create_token_key(dir.path() / "b.key"));
}

TEST(TokenKeyTest, ReadsAnExistingKey) {
  TempDir dir;
  const auto path = dir.path() / "token.key";
  std::string hex;
  for (int i = 0; i < 32; ++i) hex += "0f";
  unit::write_text_file(path, hex + "\n");
  EXPECT_EQ(load_or_create_token_key(path), key_of(0x0f));
  unit::write_text_file(path, hex);  // no trailing newline is fine too
  EXPECT_EQ(load_or_create_token_key(path), key_of(0x0f));
}

TEST(TokenKeyTest, RejectsACorruptFile) {
  TempDir dir;
  const auto path = dir.path() / "token.key";
  const std::vector<std::string> corrupt = {
      "",                            // empty
      "not hex at all\n",            //
      std::string(62, 'a') + "\n",   // too short
      std::string(66, 'a') + "\n",   // too long
      std::string(63, 'a') + "g\n",  // bad character
  };
  for (const auto& content : corrupt) {
    unit::write_text_file(path, content);
    EXPECT_THROW(load_or_create_token_key(path), std::runtime_error) << "'" << content << "'";
    // And it is left alone: a bad key is an operator problem, not to be replaced.
    EXPECT_EQ(unit::read_text_file(path), content);
  }
}

TEST(TokenKeyTest, UnusableLocationThrows) {
  TempDir dir;
  unit::write_text_file(dir.path() / "file", "x");
  EXPECT_THROW(load_or_create_token_key(dir.path() / "file" / "token.key"), std::runtime_error);
}

TEST(TokenKeyTest, ConcurrentProcessesAgreeOnOneKey) {
  TempDir dir;
  const auto path = dir.path() / "secrets" / "token.key";
  constexpr int kProcesses = 6;
  int go[2], results[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(results), 0);
  std::vector<pid_t> children;
  for (int i = 0; i < kProcesses; ++i) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(go[1]);
      char c;
      (void)!::read(go[0], &c, 1);  // returns when the parent closes the pipe
      int exit_code = 0;
      TokenKey key{};
      try {
        key = load_or_create_token_key(path);
      } catch (...) {
        exit_code = 1;
      }
      (void)!::write(results[1], key.data(), key.size());  // 32 bytes: atomic on a pipe
      ::_exit(exit_code);
    }
    children.push_back(pid);
  }
  ::close(go[0]);
  ::close(go[1]);  // start them all at once
  ::close(results[1]);
  int failures = 0;
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  }
  std::set<TokenKey> keys;
  TokenKey key;
  while (::read(results[0], key.data(), key.size()) == ssize_t(key.size())) keys.insert(key);
  ::close(results[0]);
  EXPECT_EQ(failures, 0);
  ASSERT_EQ(keys.size(), 1u) << "creators disagree";
  EXPECT_EQ(*keys.begin(), load_or_create_token_key(path));
}

TEST(TokenKeyTest, ConcurrentThreadsAgreeOnOneKey) {
  // The same promise from threads of one process (which share a pid, and so
  // the name of the temporary file the key is written to before it is linked).
  for (int round = 0; round < 100; ++round) {
    TempDir dir;
    const auto path = dir.path() / "token.key";
    constexpr int kThreads = 4;
    std::vector<TokenKey> keys(kThreads);
    std::vector<std::string> failed(kThreads);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        try {
          keys[i] = load_or_create_token_key(path);
        } catch (const std::exception& e) {
          failed[i] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
      ASSERT_EQ(failed[i], "") << "round " << round << ": thread " << i << " threw";
      ASSERT_EQ(keys[i], keys[0]) << "round " << round << ": threads disagree";
    }
  }
}

// ---- passwords ----------------------------------------------------------------

TEST(PasswordTest, HashAndVerify) {
  // One argon2id hash only: it costs ~100 ms and 64 MiB.
  const std::string hash = hash_password("correct horse");
  EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u) << hash;
  EXPECT_TRUE(verify_password(hash, "correct horse"));
  EXPECT_FALSE(verify_password(hash, "correct horse "));
  EXPECT_FALSE(verify_password(hash, ""));
}

TEST(PasswordTest, VerifyAgainstGarbageHashIsFalse) {
  EXPECT_FALSE(verify_password("", "x"));
  EXPECT_FALSE(verify_password("plaintext", "plaintext"));
  EXPECT_FALSE(verify_password("$argon2id$v=19$m=65536,t=2,p=1$broken", "x"));
}

}  // namespace
}  // namespace chat4all::auth
