// hook_plain_tool.cpp - a small C-style tool linked with goro::goro (so every hooked libc entry
// point of src/hook/io_hooks.cpp is its read, write, poll, ...) that never starts the runtime.
// hook_test runs it with and without GORO_HOOK=0 and expects the same output: a process with
// the interposer linked in but no goroutines behaves exactly like plain libc.
//
//   goro_hook_plain_tool cat FILE    copies FILE to stdout through a pipe, a writer thread,
//                                    poll/select and read/write (a `cat` workload)
//   goro_hook_plain_tool selftest    exercises every hooked call once and prints a transcript
//                                    of results and errno names (deterministic)
//   goro_hook_plain_tool info        prints whether the hooks are linked in, the thread count
//
// It uses no goro API: only libc (and std::thread for a writer), like an unmodified program.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

std::string out;

const char* ename(int e) {
  switch (e) {
    case 0:
      return "0";
    case EAGAIN:
      return "EAGAIN";
    case EBADF:
      return "EBADF";
    case EINVAL:
      return "EINVAL";
    case ECONNREFUSED:
      return "ECONNREFUSED";
    case EINPROGRESS:
      return "EINPROGRESS";
    case ENOTSOCK:
      return "ENOTSOCK";
    case ESPIPE:
      return "ESPIPE";
    case EPIPE:
      return "EPIPE";
    case EFAULT:
      return "EFAULT";
    default:
      return "other";
  }
}

// Records "what = result errno" (errno only for a failure).
void rec(const char* what, long r) {
  char b[160];
  std::snprintf(b, sizeof b, "%s = %ld%s%s\n", what, r, r < 0 ? " " : "",
                r < 0 ? ename(errno) : "");
  out += b;
}

void rec_str(const char* what, const std::string& v) {
  out += what;
  out += " = ";
  out += v;
  out += "\n";
}

int count_threads() {
  int n = 0;
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      if (std::strncmp(line, "Threads:", 8) == 0) n = std::atoi(line + 8);
    }
    std::fclose(f);
  }
  return n;
}

// Whether `read` resolves to the interposer (in this executable, or in libgoro.so), not to
// libc's definition (the object that defines fopen, which is never hooked).
bool hooks_linked() {
  Dl_info libc{}, rd{};
  void* p = dlsym(RTLD_DEFAULT, "read");
  if (dladdr(reinterpret_cast<void*>(&std::fopen), &libc) == 0 || dladdr(p, &rd) == 0) return false;
  return libc.dli_fname != nullptr && rd.dli_fname != nullptr &&
         std::strcmp(libc.dli_fname, rd.dli_fname) != 0;
}

int cat(const char* path) {
  int in = open(path, O_RDONLY | O_CLOEXEC);
  if (in < 0) return 2;
  int p[2];
  if (pipe(p) != 0) return 3;
  // A writer thread feeds the pipe; the main thread waits with poll and select alternately.
  std::thread writer([&] {
    char buf[3000];
    for (;;) {
      ssize_t n = read(in, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(p[1], buf + off, static_cast<size_t>(n - off));
        if (w < 0) return;
        off += w;
      }
    }
    close(p[1]);
  });
  char buf[4096];
  for (int i = 0;; i++) {
    if (i % 2 == 0) {
      pollfd pf{p[0], POLLIN, 0};
      if (poll(&pf, 1, 5000) <= 0) return 4;
    } else {
      fd_set rs;
      FD_ZERO(&rs);
      FD_SET(p[0], &rs);
      timeval tv{5, 0};
      if (select(p[0] + 1, &rs, nullptr, nullptr, &tv) <= 0) return 5;
    }
    ssize_t n = read(p[0], buf, sizeof buf);
    if (n < 0) return 6;
    if (n == 0) break;
    if (write(1, buf, static_cast<size_t>(n)) != n) return 7;
  }
  writer.join();
  close(p[0]);
  close(in);
  return count_threads() == 1 ? 0 : 8;
}

void selftest() {
  char buf[64];
  // Pipes: data, EOF, user O_NONBLOCK and EAGAIN, F_GETFL.
  int p[2];
  rec("pipe", pipe(p));
  rec("write", write(p[1], "hello", 5));
  rec("read", read(p[0], buf, sizeof buf));
  rec("F_GETFL&O_NONBLOCK", fcntl(p[0], F_GETFL) & O_NONBLOCK);
  rec("F_SETFL O_NONBLOCK", fcntl(p[0], F_SETFL, O_NONBLOCK));
  rec("F_GETFL&O_NONBLOCK", fcntl(p[0], F_GETFL) & O_NONBLOCK);
  rec("read empty nonblocking", read(p[0], buf, sizeof buf));
  int one = 1;
  rec("ioctl FIONBIO 0", (one = 0, ioctl(p[0], FIONBIO, &one)));
  rec("F_GETFL&O_NONBLOCK", fcntl(p[0], F_GETFL) & O_NONBLOCK);
  int avail = -1;
  rec("write", write(p[1], "abc", 3));
  rec("ioctl FIONREAD", ioctl(p[0], FIONREAD, &avail));
  rec("FIONREAD value", avail);
  iovec iov[2] = {{buf, 1}, {buf + 1, 10}};
  rec("readv", readv(p[0], iov, 2));
  iovec wv[2] = {{const_cast<char*>("xy"), 2}, {const_cast<char*>("z"), 1}};
  rec("writev", writev(p[1], wv, 2));
  rec("read", read(p[0], buf, sizeof buf));
  // poll / ppoll / select / pselect: timeouts on an empty pipe, then readiness.
  pollfd pf{p[0], POLLIN, 0};
  rec("poll timeout", poll(&pf, 1, 10));
  timespec ts{0, 10'000'000};
  rec("ppoll timeout", ppoll(&pf, 1, &ts, nullptr));
  rec("ppoll ts untouched", ts.tv_nsec);
  fd_set rs;
  FD_ZERO(&rs);
  FD_SET(p[0], &rs);
  timeval tv{0, 10'000};
  rec("select timeout", select(p[0] + 1, &rs, nullptr, nullptr, &tv));
  rec("select tv left", tv.tv_sec * 1'000'000 + tv.tv_usec);
  FD_SET(p[0], &rs);
  rec("pselect timeout", pselect(p[0] + 1, &rs, nullptr, nullptr, &ts, nullptr));
  rec("write", write(p[1], "q", 1));
  rec("poll ready", poll(&pf, 1, 1000));
  rec("poll revents", pf.revents);
  // pread on a pipe: ESPIPE.
  rec("pread pipe", pread(p[0], buf, 1, 0));
  rec("close", close(p[1]));
  rec("read rest", read(p[0], buf, sizeof buf));
  rec("read eof", read(p[0], buf, sizeof buf));
  rec("close", close(p[0]));
  rec("close again", close(p[0]));
  rec("read closed", read(p[0], buf, 1));
  rec("close -1", close(-1));
  // pipe2, dup family.
  rec("pipe2", pipe2(p, O_CLOEXEC | O_NONBLOCK));
  int d = dup(p[0]);
  rec("dup ok", d >= 0);
  rec("dup F_GETFL&O_NONBLOCK", (fcntl(d, F_GETFL) & O_NONBLOCK) != 0);
  rec("dup2 ok", dup2(p[0], d) == d);
  rec("dup3 same", dup3(p[0], p[0], 0));
  int d2 = fcntl(p[0], F_DUPFD_CLOEXEC, 0);
  rec("F_DUPFD ok", d2 >= 0);
  rec("close", close(d2));
  rec("close", close(d));
  rec("close", close(p[0]));
  rec("close", close(p[1]));
  // Socketpairs: send/recv, sendto/recvfrom, sendmsg/recvmsg, MSG_DONTWAIT, SO_RCVTIMEO.
  int sv[2];
  rec("socketpair", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
  rec("send", send(sv[0], "ping", 4, 0));
  rec("recv", recv(sv[1], buf, sizeof buf, 0));
  rec("sendto", sendto(sv[1], "pong", 4, 0, nullptr, 0));
  rec("recvfrom", recvfrom(sv[0], buf, sizeof buf, 0, nullptr, nullptr));
  iovec mv{const_cast<char*>("msg!"), 4};
  msghdr mh{};
  mh.msg_iov = &mv;
  mh.msg_iovlen = 1;
  rec("sendmsg", sendmsg(sv[0], &mh, 0));
  iovec rv{buf, sizeof buf};
  msghdr rh{};
  rh.msg_iov = &rv;
  rh.msg_iovlen = 1;
  rec("recvmsg", recvmsg(sv[1], &rh, 0));
  rec("recv MSG_DONTWAIT", recv(sv[1], buf, sizeof buf, MSG_DONTWAIT));
  timeval rto{0, 20'000};
  rec("setsockopt SO_RCVTIMEO", setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto));
  rec("recv timeout", recv(sv[1], buf, sizeof buf, 0));
  rec("send 4", send(sv[0], "wait", 4, 0));
  rec("recv MSG_WAITALL", recv(sv[1], buf, 4, MSG_WAITALL));
  rec("close", close(sv[0]));
  rec("recv eof", recv(sv[1], buf, sizeof buf, 0));
  rec("close", close(sv[1]));
  // TCP on loopback: socket, bind, listen, connect, accept, accept4, refused connect.
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  rec("socket ok", ls >= 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  rec("bind", bind(ls, reinterpret_cast<sockaddr*>(&sa), sizeof sa));
  rec("listen", listen(ls, 16));
  socklen_t sl = sizeof sa;
  getsockname(ls, reinterpret_cast<sockaddr*>(&sa), &sl);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  rec("connect", connect(c, reinterpret_cast<sockaddr*>(&sa), sizeof sa));
  int a = accept(ls, nullptr, nullptr);
  rec("accept ok", a >= 0);
  rec("write", write(c, "tcp", 3));
  rec("read", read(a, buf, sizeof buf));
  int c2 = socket(AF_INET, SOCK_STREAM, 0);
  rec("connect", connect(c2, reinterpret_cast<sockaddr*>(&sa), sizeof sa));
  int a2 = accept4(ls, nullptr, nullptr, SOCK_NONBLOCK);
  rec("accept4 ok", a2 >= 0);
  rec("accept4 F_GETFL&O_NONBLOCK", (fcntl(a2, F_GETFL) & O_NONBLOCK) != 0);
  rec("read accept4 empty", read(a2, buf, sizeof buf));
  int fl = fcntl(ls, F_GETFL);
  fcntl(ls, F_SETFL, fl | O_NONBLOCK);
  rec("accept nothing pending", accept(ls, nullptr, nullptr));
  rec("close", close(a2));
  rec("close", close(c2));
  rec("close", close(a));
  rec("close", close(c));
  rec("close", close(ls));
  int c3 = socket(AF_INET, SOCK_STREAM, 0);
  rec("connect refused", connect(c3, reinterpret_cast<sockaddr*>(&sa), sizeof sa));
  rec("close", close(c3));
  rec("send on non-socket", send(1, "x", 0, 0) < 0 ? -1 : 0);
  // epoll_wait / epoll_pwait on an empty set: timeouts.
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event evs[4];
  rec("epoll_wait timeout", epoll_wait(ep, evs, 4, 10));
  rec("epoll_pwait timeout", epoll_pwait(ep, evs, 4, 10, nullptr));
  rec("close", close(ep));
  // Sleeping.
  timespec sl1{0, 1'000'000};
  rec("nanosleep", nanosleep(&sl1, nullptr));
  timespec bad{0, 2'000'000'000};
  rec("nanosleep EINVAL", nanosleep(&bad, nullptr));
  rec("clock_nanosleep rel", clock_nanosleep(CLOCK_MONOTONIC, 0, &sl1, nullptr));
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  now.tv_nsec += 1'000'000;
  if (now.tv_nsec >= 1'000'000'000) {
    now.tv_sec++;
    now.tv_nsec -= 1'000'000'000;
  }
  rec("clock_nanosleep abs", clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &now, nullptr));
  rec("clock_nanosleep thread cpu", clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &sl1, nullptr));
  rec("usleep", usleep(1000));
  rec("sleep 0", sleep(0));
  // The resolver (the hosts file).
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int g = getaddrinfo("localhost", "80", &hints, &res);
  rec("getaddrinfo", g);
  if (g == 0) {
    auto* in = reinterpret_cast<sockaddr_in*>(res->ai_addr);
    char ip[32];
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    rec_str("getaddrinfo addr", std::string(ip) + ":" + std::to_string(ntohs(in->sin_port)));
    freeaddrinfo(res);
  }
  char host[64], serv[16];
  sockaddr_in lo{};
  lo.sin_family = AF_INET;
  lo.sin_port = htons(80);
  lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  rec("getnameinfo", getnameinfo(reinterpret_cast<sockaddr*>(&lo), sizeof lo, host, sizeof host,
                                 serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV));
  rec_str("getnameinfo host", std::string(host) + ":" + serv);
  hostent* h = gethostbyname("localhost");
  rec("gethostbyname ok", h != nullptr);
  // A regular file: write, pread, pwrite, read.
  char path[] = "/tmp/goro_hook_tool_XXXXXX";
  int f = mkstemp(path);
  unlink(path);
  rec("file write", write(f, "0123456789", 10));
  rec("file pread", pread(f, buf, 4, 3));
  rec("file pwrite", pwrite(f, "AB", 2, 0));
  lseek(f, 0, SEEK_SET);
  rec("file read", read(f, buf, sizeof buf));
  buf[10] = 0;
  rec_str("file content", buf);
  rec("close", close(f));
  rec("threads", count_threads());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "cat") == 0) return cat(argv[2]);
  if (argc >= 2 && std::strcmp(argv[1], "selftest") == 0) {
    selftest();
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }
  if (argc >= 2 && std::strcmp(argv[1], "info") == 0) {
    std::printf("hooks_linked=%d threads=%d\n", hooks_linked() ? 1 : 0, count_threads());
    return 0;
  }
  std::fprintf(stderr, "usage: %s cat FILE | selftest | info\n", argv[0]);
  return 2;
}
