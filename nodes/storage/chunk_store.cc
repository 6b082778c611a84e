#include "nodes/storage/chunk_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/codec.h"
#include "common/curve.h"
#include "common/ids.h"
#include "common/sha256.h"
#include "common/transport.h"

namespace chat4all::storage {
namespace {

namespace fs = std::filesystem;

bool fsync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return false;
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  return synced;
}

// Writes `bytes` to `path` and fsyncs it; false (and errno) on failure.
bool write_synced(const fs::path& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return false;
  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = errno;
      ::close(fd);
      errno = error;
      return false;
    }
    written += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  errno = error;
  return synced;
}

}  // namespace

ChunkStore::ChunkStore(fs::path directory) : directory_(std::move(directory)) {
  fs::create_directories(directory_);
}

std::optional<fs::path> ChunkStore::blob_dir(const std::string& tenant,
                                             const std::string& blob) const {
  if (!ids::is_valid_name(tenant) || !ids::is_valid_id(blob) || tenant == "." || tenant == ".." ||
      blob == "." || blob == "..")
    return std::nullopt;
  return directory_ / tenant / blob;
}

bool ChunkStore::has(const std::string& tenant, const std::string& blob,
                     const std::string& sha256) const {
  auto dir = blob_dir(tenant, blob);
  std::error_code ignored;
  return dir && is_sha256_hex(sha256) && fs::exists(*dir / sha256, ignored);
}

wire::ChunkPutReply ChunkStore::put(const wire::ChunkPut& chunk) {
  auto dir = blob_dir(chunk.tenant_id, chunk.blob_id);
  if (!dir || !is_sha256_hex(chunk.sha256))
    return {wire::Status::kInvalid, "tenant_id, blob_id or sha256 is malformed"};
  if (chunk.bytes.size() > wire::kChunkBytesMax)
    return {wire::Status::kInvalid,
            "a chunk holds at most " + std::to_string(wire::kChunkBytesMax) + " bytes"};
  if (sha256_hex(chunk.bytes) != chunk.sha256)
    return {wire::Status::kInvalid, "the bytes do not hash to the chunk's sha256"};
  const fs::path target = *dir / chunk.sha256;
  std::error_code error;
  if (fs::exists(target, error)) return {wire::Status::kOk, "held already"};
  const bool new_dir = !fs::exists(*dir, error);
  fs::create_directories(*dir, error);
  if (error)
    return {wire::Status::kInternal, "cannot make " + dir->string() + ": " + error.message()};
  // A name of its own per write: two uploads writing the same chunk never share a file.
  const fs::path temporary = *dir / (chunk.sha256 + "." + ids::new_trace_id() + ".part");
  if (!write_synced(temporary, chunk.bytes)) {
    const int code = errno;
    fs::remove(temporary, error);
    return {code == ENOSPC || code == EDQUOT ? wire::Status::kStorageFull : wire::Status::kInternal,
            "writing the chunk failed: " + std::string(std::strerror(code))};
  }
  fs::rename(temporary, target, error);
  if (error) {
    fs::remove(temporary, error);
    return {wire::Status::kInternal, "renaming the chunk failed: " + error.message()};
  }
  // The rename, and a new blob directory's entry in the tenant's, are durable too.
  if (!fsync_path(*dir, O_RDONLY | O_DIRECTORY) ||
      (new_dir && !fsync_path(dir->parent_path(), O_RDONLY | O_DIRECTORY)))
    return {wire::Status::kInternal, "fsync of the chunk's directory failed"};
  return {wire::Status::kOk, ""};
}

wire::ChunkGetReply ChunkStore::get(const wire::ChunkGet& chunk) const {
  auto dir = blob_dir(chunk.tenant_id, chunk.blob_id);
  if (!dir || !is_sha256_hex(chunk.sha256))
    return {wire::Status::kInvalid, "", "tenant_id, blob_id or sha256 is malformed"};
  std::ifstream in(*dir / chunk.sha256, std::ios::binary);
  if (!in) return {wire::Status::kNotFound, "", "chunk not held here"};
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::size_t>(in.tellg());
  if (size > wire::kChunkBytesMax) return {wire::Status::kNotFound, "", "chunk damaged"};
  in.seekg(0);
  std::string bytes(size, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  if (!in || sha256_hex(bytes) != chunk.sha256)
    return {wire::Status::kNotFound, "", "chunk damaged"};
  return {wire::Status::kOk, std::move(bytes), ""};
}

void ChunkStore::free_blob(const std::string& tenant_and_blob) {
  const auto slash = tenant_and_blob.find('/');
  if (slash == std::string::npos) return;
  auto dir = blob_dir(tenant_and_blob.substr(0, slash), tenant_and_blob.substr(slash + 1));
  std::error_code ignored;
  if (dir) fs::remove_all(*dir, ignored);
}

ChunkServer::ChunkServer(const NodeSpec& self, fs::path directory)
    : store_(std::move(directory)),
      puts_(metrics().counter("chat4all_storage_chunks_written_total",
                              "File chunks written and fsynced")),
      gets_(metrics().counter("chat4all_storage_chunks_read_total", "File chunks served")),
      refused_(metrics().counter("chat4all_storage_chunks_refused_total",
                                 "Chunk puts refused: bad checksum or name, or the disk failed")),
      freed_(metrics().counter("chat4all_storage_blobs_freed_total",
                               "Blobs (a file's chunks) deleted: no file refers to them")),
      thread_(&ChunkServer::run, this, transport::bind_address(self, "chunks")) {}

ChunkServer::~ChunkServer() {
  stopping_ = true;
  thread_.join();
}

void ChunkServer::free_blobs(const std::vector<std::string>& tenant_and_blobs) {
  std::lock_guard lock(mutex_);
  to_free_.insert(to_free_.end(), tenant_and_blobs.begin(), tenant_and_blobs.end());
}

void ChunkServer::run(std::string bind_address) {
  zmq::socket_t socket(transport::context(), zmq::socket_type::router);
  transport::configure(socket, kChunkQueueMax);
  curve::serve(socket, "storage.chunks", {NodeRole::kFrontend});
  socket.bind(bind_address);
  log_.info("listening", {{"chunks", bind_address}});
  zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
  while (!stopping_.load()) {
    std::vector<std::string> freeing;
    {
      std::lock_guard lock(mutex_);
      freeing.swap(to_free_);
    }
    for (const auto& blob : freeing) {
      store_.free_blob(blob);
      freed_.add();
      log_.info("blob_freed", {{"blob", blob}});
    }
    transport::poll(items, 1, std::chrono::milliseconds(100));
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    auto frames = transport::receive_multipart(socket);
    if (frames.size() != 2) continue;
    std::string why;
    auto frame = codec::decode(transport::view(frames[1]), &why);
    if (!frame) {
      transport::rejected_frames_counter().add();
      log_.debug("frame_rejected", {{"reason", why}});
      continue;
    }
    const wire::Header& header = frame->header();
    std::string answer;
    if (header.type == wire::MessageType::kChunkPut) {
      auto put = frame->body<wire::ChunkPut>();
      wire::ChunkPutReply reply =
          put ? store_.put(*put) : wire::ChunkPutReply{wire::Status::kInvalid, "malformed"};
      (reply.status == wire::Status::kOk ? puts_ : refused_).add();
      if (reply.status != wire::Status::kOk)
        log_.warn("chunk_refused", {{"trace_id", header.trace_id}, {"detail", reply.detail}});
      answer = codec::encode(wire::Header{wire::kWireVersion, wire::MessageType::kChunkPutReply,
                                          header.request_id, header.trace_id},
                             reply);
    } else if (header.type == wire::MessageType::kChunkGet) {
      auto get = frame->body<wire::ChunkGet>();
      wire::ChunkGetReply reply =
          get ? store_.get(*get) : wire::ChunkGetReply{wire::Status::kInvalid, "", "malformed"};
      if (reply.status == wire::Status::kOk) gets_.add();
      answer = codec::encode(wire::Header{wire::kWireVersion, wire::MessageType::kChunkGetReply,
                                          header.request_id, header.trace_id},
                             reply);
    } else {
      transport::rejected_frames_counter().add();
      continue;
    }
    transport::send_multipart(socket, {transport::view(frames[0]), answer});
  }
}

}  // namespace chat4all::storage
