#include "common/secret_file.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>

namespace chat4all {

void create_secret_file_once(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::create_directories(path.parent_path());
  // A name of its own per caller (threads of one process included): a shared
  // temp file could be truncated by one caller after another linked it.
  char suffix[17];
  const std::uint64_t random_suffix = randombytes_random() * 0x100000000ull + randombytes_random();
  std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(random_suffix));
  const std::string temp = path.string() + ".tmp." + std::to_string(getpid()) + "." + suffix;
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) throw std::runtime_error(temp + ": cannot create");
  const bool written =
      ::write(fd, content.data(), content.size()) == ssize_t(content.size()) && ::fsync(fd) == 0;
  ::close(fd);
  // link() fails with EEXIST if another process created the file first; then
  // everyone uses that one.
  if (written) (void)::link(temp.c_str(), path.c_str());
  ::unlink(temp.c_str());
  if (!written) throw std::runtime_error(path.string() + ": cannot write");
}

}  // namespace chat4all
