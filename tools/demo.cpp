// circbuf-demo: the two foundation modules working across processes.
// A parent creates a segment and writes a struct into it; a child process
// attaches, reads it and answers; the reference count is printed at each step
// and the segment is gone from /dev/shm after the last one leaves.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

import circbuf;

namespace {

struct Greeting {
  std::int32_t writer_pid;
  std::int32_t reader_pid;
  std::uint64_t sequence;
  char text[48];
};

bool InDevShm(std::string const& name) {
  struct stat st {};
  return ::stat(("/dev/shm/" + name.substr(1)).c_str(), &st) == 0;
}

}  // namespace

int main() {
  std::string const name = "/circbuf-demo-" + std::to_string(::getpid());
  try {
    circbuf::SharedMemory shm(name, sizeof(Greeting));
    auto* g = shm.AsStruct<Greeting>();
    g->writer_pid = ::getpid();
    g->sequence = 42;
    std::snprintf(g->text, sizeof g->text, "hello from process %d", ::getpid());
    std::printf("[writer %d] created %s (%zu bytes), refcount %u\n", ::getpid(), name.c_str(), shm.Size(),
                shm.RefCount());

    std::fflush(stdout);
    pid_t const child = ::fork();
    if (child == 0) {
      int code = 0;
      {
        circbuf::SharedMemory view(name, 0, {.open = circbuf::OpenMode::kAttach});
        auto* seen = view.AsStruct<Greeting>();
        std::printf("[reader %d] attached, refcount %u, read: seq %llu \"%s\"\n", ::getpid(), view.RefCount(),
                    static_cast<unsigned long long>(seen->sequence), seen->text);
        seen->reader_pid = ::getpid();
        code = seen->sequence == 42 ? 0 : 1;
      }
      std::fflush(stdout);
      ::_exit(code);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    std::printf("[writer %d] reader %d answered and detached, refcount %u\n", ::getpid(), g->reader_pid,
                shm.RefCount());
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "circbuf-demo: %s\n", e.what());
    return 1;
  }
  std::printf("[writer %d] detached; %s in /dev/shm: %s\n", ::getpid(), name.c_str(),
              InDevShm(name) ? "still there (bug)" : "gone (last one out unlinked it)");
  return InDevShm(name) ? 1 : 0;
}
