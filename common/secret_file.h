// Files that hold a node's secrets (the token key, Curve secret keys): made once, mode 0600,
// never overwritten, safe when several processes make the same one at the same moment.
#pragma once

#include <filesystem>
#include <string>

namespace chat4all {

// Creates `path` (and its folders) holding `content`, mode 0600, unless it exists already; when
// another process or thread creates it first, theirs stays and this content is dropped. Callers
// read the file afterwards to learn which content won. Throws when it cannot be written.
void create_secret_file_once(const std::filesystem::path& path, const std::string& content);

}  // namespace chat4all
