// net.cpp - goro::net: TCP listeners and connections on the runtime's network poller (Go's
// net and internal/poll packages, TCP part). The public contract is include/goro/net.hpp;
// the poller is src/netpoll/.
//
// What it owns
// ------------
// NetFd, the state behind a Conn or Listener: the non-blocking socket, its PollDesc, a state
// word that counts the calls in progress, and two goro::Mutex that serialize readers and
// writers (the PollDesc admits one waiter per direction, and one write()'s bytes must not
// interleave with another's).
//
// The state word (Go's fdMutex, reduced to what close needs)
// ---------------------------------------------------------
//     bit 0  kClosed     close() has begun; never unset. No call may start any more.
//     bit 1  kHandle     the owning Conn/Listener object is alive; cleared by its destructor.
//     bit 2  kDestroyed  the socket is closed and the PollDesc freed; never unset.
//     3..    refs        calls in progress (each holds one reference while it runs).
// Invariants: refs only grow while kClosed is clear; the socket is closed exactly once, by
// whoever drops the last reference after kClosed is set (so no call can ever be inside a
// syscall on an fd number the kernel has reused); the NetFd is freed exactly once, by the
// later of "destroyed" and "handle dropped".
//
// A call (read, write, accept, set_*deadline, close_write):
//  1. incref: CAS refs+1, failing (bad_file_descriptor) if kClosed is set.
//  2. Readers lock rmu, writers wmu (parking while another reader/writer is active).
//  3. poll_reset (fails at once if closing or the deadline passed), then loop: the syscall;
//     on EAGAIN poll_wait, and on kPollOk retry. kPollClosing → bad_file_descriptor,
//     kPollTimeout → timed_out. (Reads differ: below.)
//  4. Unlock, decref; the last decref after close() destroys.
// close():
//  1. CAS: set kClosed and take a reference (fails if kClosed was already set).
//  2. poll_evict: the blocked reader/writer wakes with kPollClosing, unlocks, decrefs; any
//     reader or writer queued on rmu/wmu then finds the PollDesc closing at step 3.
//  3. decref. Whoever brings refs to 0: poll_close, close(2), set kDestroyed; if kHandle is
//     clear by then, free the NetFd.
// The destructor: close() if still open, clear kHandle; free the NetFd if kDestroyed was set.
//
// Reading a drained socket
// ------------------------
// A server's read loop (read a request, write the reply, read again) would make every second
// read a read(2) that says EAGAIN, then wait: one syscall per request for nothing (Go's
// netFD.Read does it). A TCP read that returns fewer bytes than asked for has emptied the
// receive queue (tcp_recvmsg copies until the queue is empty or the buffer full), and every
// segment that arrives afterwards wakes the socket's wait queue, which the poller reports as
// an edge recorded in the read semaphore (with epoll ET and with io_uring's multishot poll
// alike). So the next read skips that syscall: it waits on the semaphore first (returning at
// once if an edge came meanwhile) and reads after.
// What the short read does not consume is a FIN or an error that came with the data: the
// next read(2) reports it (0, ECONNRESET) without any new edge, and its edge may have been
// merged with the data's into the readiness this read consumed. Likewise TCP urgent data: a
// read stops short at the urgent mark, with the bytes after it still queued. So a short read
// counts as draining only while the poller has seen no hang-up, error or urgent data on the
// socket (poll_hup: the poller records it before the readiness of the same event, so a reader
// that consumed that readiness sees it), and a hang-up seen after the short read, or an error
// returned, ends the draining too: no edge follows a reset. And reads never drop a recorded edge
// (poll_check, not poll_reset): a stale one costs a read(2) that says EAGAIN, what every read cost
// before. Correct as long as data never arrives without a wake-up; the one way to get that is
// SO_RCVLOWAT set through native_handle(), and then waiting until the low-water mark is what the
// option asks for.
//
// dial: socket, connect; on EINPROGRESS register with the poller, arm the write deadline and
// wait for writability, then read SO_ERROR (a wake-up may be spurious: 0 is trusted only if
// getpeername agrees, EINPROGRESS waits again). Registering after connect() keeps the
// unconnected socket's initial EPOLLOUT|EPOLLHUP edge out of the picture.
//
// Lock order: rmu / wmu (goro::Mutex, may park) ▸ a PollDesc's lock ▸ a timer heap's lock ▸
// sched.lock. Nothing here holds a runtime Lock across a park.
//
// Threads: everything runs on the calling goroutine or plain thread; waking is the poller's
// (an M's g0) or a timer's. A call may park and resume on another OS thread, so no code here
// reads errno (its address is cached by compilers: see sys() in netpoll.hpp); every syscall
// goes through sys(), which also keeps a later libc interposition layer from seeing the
// runtime's own I/O. Every public entry is bracketed by EnterRuntime: no asynchronous
// preemption while a runtime lock is held.
#include "goro/net.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>

#include "base/platform.hpp"
#include "goro/sync.hpp"
#include "netpoll/netpoll.hpp"
#include "sched/proc.hpp"

namespace goro::internal {

struct NetFd {
  int fd = -1;  // immutable while kDestroyed is clear
  PollDesc* pd = nullptr;
  std::atomic<std::uint64_t> state;
  goro::Mutex rmu;  // readers (read, read_full, accept)
  goro::Mutex wmu;  // writers (write)
  // The last read returned fewer bytes than asked for: the receive queue was empty then (see
  // "Reading a drained socket"). Guarded by rmu.
  bool drained = false;
  // Set at creation, immutable.
  sockaddr_storage laddr{};
  sockaddr_storage raddr{};
  bool has_raddr = false;
};

namespace {

constexpr std::uint64_t kClosed = 1;
constexpr std::uint64_t kHandle = 2;
constexpr std::uint64_t kDestroyed = 4;
constexpr std::uint64_t kRef = 8;

// --- Raw syscalls (see "Threads").

void sys_close(int fd) {
  sys(SYS_close, fd);  // EINTR: Linux has closed the fd anyway; never retry
}

std::error_code errno_ec(int e) {
  return std::error_code(e, std::generic_category());
}

std::error_code closed_ec() {
  return errno_ec(EBADF);
}

std::error_code poll_ec(int r) {
  return errno_ec(r == kPollTimeout ? ETIMEDOUT : EBADF);
}

// --- NetFd lifetime (see "The state word").

void destroy(NetFd* f) {
  poll_close(f->pd);
  sys_close(f->fd);
  std::uint64_t s = f->state.fetch_or(kDestroyed, std::memory_order_acq_rel);
  if ((s & kHandle) == 0) delete f;
}

bool incref(NetFd* f) {
  std::uint64_t s = f->state.load(std::memory_order_relaxed);
  do {
    if ((s & kClosed) != 0) return false;
  } while (!f->state.compare_exchange_weak(s, s + kRef, std::memory_order_acquire,
                                           std::memory_order_relaxed));
  return true;
}

void decref(NetFd* f) {
  std::uint64_t s = f->state.fetch_sub(kRef, std::memory_order_acq_rel) - kRef;
  if ((s & kClosed) != 0 && s / kRef == 0) destroy(f);
}

bool close_fd(NetFd* f) {
  std::uint64_t s = f->state.load(std::memory_order_relaxed);
  do {
    if ((s & kClosed) != 0) return false;
  } while (!f->state.compare_exchange_weak(s, (s + kRef) | kClosed, std::memory_order_acq_rel,
                                           std::memory_order_relaxed));
  poll_evict(f->pd);
  decref(f);
  return true;
}

void drop_handle(NetFd* f) {
  if (f == nullptr) return;
  close_fd(f);
  std::uint64_t s = f->state.fetch_and(~kHandle, std::memory_order_acq_rel);
  if ((s & kDestroyed) != 0) delete f;
}

// Holds a reference for one call.
class OpRef {
 public:
  explicit OpRef(NetFd* f) : f_(f != nullptr && incref(f) ? f : nullptr) {}
  ~OpRef() {
    if (f_ != nullptr) decref(f_);
  }
  OpRef(const OpRef&) = delete;
  OpRef& operator=(const OpRef&) = delete;
  bool ok() const { return f_ != nullptr; }

 private:
  NetFd* f_;
};

// Wraps a connected or listening socket (closing it on failure). Returns null with ec set.
NetFd* new_netfd(int fd, std::error_code& ec) {
  auto* f = new (std::nothrow) NetFd;
  if (f == nullptr) {
    sys_close(fd);
    ec = errno_ec(ENOMEM);
    return nullptr;
  }
  f->state.store(kHandle, std::memory_order_relaxed);
  int err = 0;
  f->pd = poll_open(fd, &err);
  if (f->pd == nullptr) {
    sys_close(fd);
    delete f;
    ec = errno_ec(err);
    return nullptr;
  }
  f->fd = fd;
  return f;
}

void fill_addrs(NetFd* f, const sockaddr_storage* peer) {
  socklen_t len = sizeof(f->laddr);
  sys(SYS_getsockname, f->fd, &f->laddr, &len);
  if (peer != nullptr) {
    f->raddr = *peer;
    f->has_raddr = true;
  }
}

void set_nodelay(int fd) {
  int one = 1;
  sys(SYS_setsockopt, fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// --- I/O loops (steps 3 of a call). The caller holds a reference and rmu/wmu.

std::size_t read_locked(NetFd* f, void* buf, std::size_t n, std::error_code& ec) {
  // Drained: wait for an edge first (it may be recorded already) instead of a read that
  // would say EAGAIN. Never drop a recorded edge here (see "Reading a drained socket").
  bool wait_first = f->drained && !poll_hup(f->pd);  // a hang-up since: read(2) reports it
  int e = wait_first ? poll_wait(f->pd, kPollRead) : poll_check(f->pd, kPollRead);
  if (e != kPollOk) {
    ec = poll_ec(e);
    return 0;
  }
  for (;;) {
    long r = sys(SYS_read, f->fd, buf, n);
    if (r >= 0) {
      f->drained = r > 0 && static_cast<std::size_t>(r) < n && !poll_hup(f->pd);
      return static_cast<std::size_t>(r);
    }
    if (r == -EINTR) continue;
    if (r == -EAGAIN) {
      if (e = poll_wait(f->pd, kPollRead); e != kPollOk) {
        ec = poll_ec(e);
        return 0;
      }
      continue;
    }
    f->drained = false;  // an error (ECONNRESET) is no proof of an empty queue
    ec = errno_ec(static_cast<int>(-r));
    return 0;
  }
}

std::size_t write_locked(NetFd* f, const void* buf, std::size_t n, std::error_code& ec) {
  if (int e = poll_reset(f->pd, kPollWrite); e != kPollOk) {
    ec = poll_ec(e);
    return 0;
  }
  const char* p = static_cast<const char*>(buf);
  std::size_t done = 0;
  while (done < n) {
    long r = sys(SYS_sendto, f->fd, p + done, n - done, MSG_NOSIGNAL, nullptr, 0);
    if (r >= 0) {
      done += static_cast<std::size_t>(r);
      continue;
    }
    if (r == -EINTR) continue;
    if (r == -EAGAIN) {
      if (int e = poll_wait(f->pd, kPollWrite); e != kPollOk) {
        ec = poll_ec(e);
        return done;
      }
      continue;
    }
    ec = errno_ec(static_cast<int>(-r));
    return done;
  }
  return done;
}

std::int64_t to_ns(net::Clock::time_point t) {
  if (t == net::no_deadline) return 0;
  std::int64_t v =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  return v == 0 ? -1 : v;  // 0 means "none" to the poller; the epoch itself is long past
}

void set_deadline_impl(NetFd* f, net::Clock::time_point t, int mode, std::error_code& ec) {
  ec.clear();
  EnterRuntime rt;
  OpRef ref(f);
  if (!ref.ok()) {
    ec = closed_ec();
    return;
  }
  poll_set_deadline(f->pd, to_ns(t), mode);
}

// --- Addresses.

enum class Family { kAny, k4, k6 };

bool parse_network(std::string_view n, Family* fam) {
  if (n == "tcp") {
    *fam = Family::kAny;
  } else if (n == "tcp4") {
    *fam = Family::k4;
  } else if (n == "tcp6") {
    *fam = Family::k6;
  } else {
    return false;
  }
  return true;
}

// "host:port", "[v6]:port", ":port".
bool split_host_port(std::string_view a, std::string_view* host, std::uint16_t* port) {
  std::string_view rest;
  if (!a.empty() && a.front() == '[') {
    std::size_t close = a.find(']');
    if (close == std::string_view::npos) return false;
    *host = a.substr(1, close - 1);
    rest = a.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return false;
    if (host->find(':') == std::string_view::npos) return false;  // brackets are for IPv6
  } else {
    std::size_t colon = a.rfind(':');
    if (colon == std::string_view::npos) return false;
    *host = a.substr(0, colon);
    if (host->find(':') != std::string_view::npos) return false;  // IPv6 needs brackets
    rest = a.substr(colon);
  }
  std::string_view digits = rest.substr(1);
  if (digits.empty() || digits.size() > 5) return false;
  std::uint32_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  *port = static_cast<std::uint16_t>(v);
  return true;
}

// Turns (network, address) into a socket address. An empty host is the wildcard for listen
// (*dual_stack: try IPv6 without V6ONLY first) and the loopback for dial. Returns 0 or EINVAL.
int resolve(std::string_view network, std::string_view address, bool for_listen,
            sockaddr_storage* sa, socklen_t* len, bool* dual_stack) {
  *dual_stack = false;
  Family fam;
  std::string_view host;
  std::uint16_t port = 0;
  if (!parse_network(network, &fam) || !split_host_port(address, &host, &port)) return EINVAL;
  std::memset(sa, 0, sizeof(*sa));
  auto v4 = [&](in_addr a) {
    auto* s4 = reinterpret_cast<sockaddr_in*>(sa);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    s4->sin_addr = a;
    *len = sizeof(sockaddr_in);
    return 0;
  };
  auto v6 = [&](const in6_addr& a) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(sa);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    s6->sin6_addr = a;
    *len = sizeof(sockaddr_in6);
    return 0;
  };
  in_addr a4{};
  if (host.empty() || host == "localhost") {
    bool loopback = !host.empty() || !for_listen;
    if (fam == Family::k6) return v6(loopback ? in6addr_loopback : in6addr_any);
    a4.s_addr = htonl(loopback ? INADDR_LOOPBACK : INADDR_ANY);
    if (!loopback && fam == Family::kAny) {
      *dual_stack = true;
      v6(in6addr_any);
      return 0;
    }
    return v4(a4);
  }
  char buf[64];
  if (host.size() >= sizeof(buf)) return EINVAL;
  std::memcpy(buf, host.data(), host.size());
  buf[host.size()] = 0;
  if (::inet_pton(AF_INET, buf, &a4) == 1) {
    if (fam == Family::k6) return EINVAL;
    return v4(a4);
  }
  in6_addr a6{};
  if (::inet_pton(AF_INET6, buf, &a6) == 1) {
    if (fam == Family::k4) return EINVAL;
    return v6(a6);
  }
  return EINVAL;  // a name: resolution is not supported yet (see goro/net.hpp)
}

std::string format_addr(const sockaddr_storage& sa) {
  char ip[INET6_ADDRSTRLEN] = {};
  if (sa.ss_family == AF_INET) {
    const auto* s4 = reinterpret_cast<const sockaddr_in*>(&sa);
    ::inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
    return std::string(ip) + ":" + std::to_string(ntohs(s4->sin_port));
  }
  if (sa.ss_family == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&sa);
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      ::inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, sizeof(ip));
      return std::string(ip) + ":" + std::to_string(ntohs(s6->sin6_port));
    }
    ::inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(s6->sin6_port));
  }
  return std::string();
}

// Returns the fd or -errno.
long new_socket(int family) {
  return sys(SYS_socket, family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
}

// Creates, binds and listens; returns the fd or -1 with *err.
int listen_socket(const sockaddr_storage& sa, socklen_t len, bool dual_stack, int* err) {
  long fd = new_socket(sa.ss_family);
  if (fd < 0) {
    *err = static_cast<int>(-fd);
    return -1;
  }
  int one = 1;
  sys(SYS_setsockopt, fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (dual_stack) {
    int zero = 0;
    sys(SYS_setsockopt, fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  }
  long r = sys(SYS_bind, fd, &sa, len);
  if (r == 0) r = sys(SYS_listen, fd, 4096);  // the kernel caps it at net.core.somaxconn
  if (r != 0) {
    *err = static_cast<int>(-r);
    sys_close(static_cast<int>(fd));
    return -1;
  }
  return static_cast<int>(fd);
}

}  // namespace

// Builds and opens the public handles (they are friends of it).
struct NetAccess {
  static net::Conn conn(NetFd* f) { return net::Conn(f); }
  static net::Listener listener(NetFd* f) { return net::Listener(f); }
  static NetFd* fd(const net::Conn& c) { return c.fd_; }
  static NetFd* fd(const net::Listener& l) { return l.fd_; }
  static NetFd* release(net::Conn& c) {
    NetFd* f = c.fd_;
    c.fd_ = nullptr;
    return f;
  }
};

}  // namespace goro::internal

namespace goro::net {

using namespace goro::internal;

namespace {

template <class T>
T throw_if(T v, const std::error_code& ec, const char* what) {
  if (ec) throw std::system_error(ec, what);
  return v;
}

void throw_if(const std::error_code& ec, const char* what) {
  if (ec) throw std::system_error(ec, what);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Conn

Conn& Conn::operator=(Conn&& o) noexcept {
  if (this != &o) {
    EnterRuntime rt;
    drop_handle(fd_);
    fd_ = o.fd_;
    o.fd_ = nullptr;
  }
  return *this;
}

Conn::~Conn() {
  EnterRuntime rt;
  drop_handle(fd_);
}

std::size_t Conn::read(void* buf, std::size_t n, std::error_code& ec) noexcept {
  ec.clear();
  EnterRuntime rt;
  OpRef ref(fd_);
  if (!ref.ok()) {
    ec = closed_ec();
    return 0;
  }
  std::lock_guard<goro::Mutex> hold(fd_->rmu);
  if (n == 0) return 0;
  return read_locked(fd_, buf, n, ec);
}

std::size_t Conn::read(void* buf, std::size_t n) {
  std::error_code ec;
  return throw_if(read(buf, n, ec), ec, "goro::net::Conn::read");
}

std::size_t Conn::read_full(void* buf, std::size_t n, std::error_code& ec) noexcept {
  ec.clear();
  EnterRuntime rt;
  OpRef ref(fd_);
  if (!ref.ok()) {
    ec = closed_ec();
    return 0;
  }
  std::lock_guard<goro::Mutex> hold(fd_->rmu);
  auto* p = static_cast<char*>(buf);
  std::size_t got = 0;
  while (got < n) {
    std::size_t r = read_locked(fd_, p + got, n - got, ec);
    if (ec || r == 0) break;
    got += r;
  }
  return got;
}

std::size_t Conn::read_full(void* buf, std::size_t n) {
  std::error_code ec;
  return throw_if(read_full(buf, n, ec), ec, "goro::net::Conn::read_full");
}

std::size_t Conn::write(const void* buf, std::size_t n, std::error_code& ec) noexcept {
  ec.clear();
  EnterRuntime rt;
  OpRef ref(fd_);
  if (!ref.ok()) {
    ec = closed_ec();
    return 0;
  }
  std::lock_guard<goro::Mutex> hold(fd_->wmu);
  if (n == 0) return 0;
  return write_locked(fd_, buf, n, ec);
}

std::size_t Conn::write(const void* buf, std::size_t n) {
  std::error_code ec;
  return throw_if(write(buf, n, ec), ec, "goro::net::Conn::write");
}

void Conn::close(std::error_code& ec) noexcept {
  ec.clear();
  EnterRuntime rt;
  if (fd_ == nullptr || !close_fd(fd_)) ec = closed_ec();
}

void Conn::close() {
  std::error_code ec;
  close(ec);
  throw_if(ec, "goro::net::Conn::close");
}

void Conn::close_write(std::error_code& ec) noexcept {
  ec.clear();
  EnterRuntime rt;
  OpRef ref(fd_);
  if (!ref.ok()) {
    ec = closed_ec();
    return;
  }
  if (long r = sys(SYS_shutdown, fd_->fd, SHUT_WR); r != 0) ec = errno_ec(static_cast<int>(-r));
}

void Conn::close_write() {
  std::error_code ec;
  close_write(ec);
  throw_if(ec, "goro::net::Conn::close_write");
}

void Conn::set_deadline(Clock::time_point t, std::error_code& ec) noexcept {
  set_deadline_impl(fd_, t, kPollReadWrite, ec);
}

void Conn::set_deadline(Clock::time_point t) {
  std::error_code ec;
  set_deadline(t, ec);
  throw_if(ec, "goro::net::Conn::set_deadline");
}

void Conn::set_read_deadline(Clock::time_point t, std::error_code& ec) noexcept {
  set_deadline_impl(fd_, t, kPollRead, ec);
}

void Conn::set_read_deadline(Clock::time_point t) {
  std::error_code ec;
  set_read_deadline(t, ec);
  throw_if(ec, "goro::net::Conn::set_read_deadline");
}

void Conn::set_write_deadline(Clock::time_point t, std::error_code& ec) noexcept {
  set_deadline_impl(fd_, t, kPollWrite, ec);
}

void Conn::set_write_deadline(Clock::time_point t) {
  std::error_code ec;
  set_write_deadline(t, ec);
  throw_if(ec, "goro::net::Conn::set_write_deadline");
}

std::string Conn::local_addr() const {
  return fd_ == nullptr ? std::string() : format_addr(fd_->laddr);
}

std::string Conn::remote_addr() const {
  return fd_ == nullptr || !fd_->has_raddr ? std::string() : format_addr(fd_->raddr);
}

int Conn::native_handle() const noexcept {
  return fd_ == nullptr ? -1 : fd_->fd;
}

// ---------------------------------------------------------------------------------------------
// Listener

Listener& Listener::operator=(Listener&& o) noexcept {
  if (this != &o) {
    EnterRuntime rt;
    drop_handle(fd_);
    fd_ = o.fd_;
    o.fd_ = nullptr;
  }
  return *this;
}

Listener::~Listener() {
  EnterRuntime rt;
  drop_handle(fd_);
}

Conn Listener::accept(std::error_code& ec) noexcept {
  ec.clear();
  EnterRuntime rt;
  OpRef ref(fd_);
  if (!ref.ok()) {
    ec = closed_ec();
    return Conn();
  }
  std::lock_guard<goro::Mutex> hold(fd_->rmu);
  if (int e = poll_reset(fd_->pd, kPollRead); e != kPollOk) {
    ec = poll_ec(e);
    return Conn();
  }
  for (;;) {
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    long c = sys(SYS_accept4, fd_->fd, &peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) {
      NetFd* f = new_netfd(static_cast<int>(c), ec);
      if (f == nullptr) return Conn();
      set_nodelay(f->fd);
      fill_addrs(f, &peer);
      return NetAccess::conn(f);
    }
    if (c == -EINTR || c == -ECONNABORTED) continue;
    if (c == -EAGAIN) {
      if (int e = poll_wait(fd_->pd, kPollRead); e != kPollOk) {
        ec = poll_ec(e);
        return Conn();
      }
      continue;
    }
    ec = errno_ec(static_cast<int>(-c));
    return Conn();
  }
}

Conn Listener::accept() {
  std::error_code ec;
  Conn c = accept(ec);
  throw_if(ec, "goro::net::Listener::accept");
  return c;
}

void Listener::close(std::error_code& ec) noexcept {
  ec.clear();
  EnterRuntime rt;
  if (fd_ == nullptr || !close_fd(fd_)) ec = closed_ec();
}

void Listener::close() {
  std::error_code ec;
  close(ec);
  throw_if(ec, "goro::net::Listener::close");
}

std::string Listener::addr() const {
  return fd_ == nullptr ? std::string() : format_addr(fd_->laddr);
}

int Listener::native_handle() const noexcept {
  return fd_ == nullptr ? -1 : fd_->fd;
}

// ---------------------------------------------------------------------------------------------
// listen / dial

Listener listen(std::string_view network, std::string_view address, std::error_code& ec) noexcept {
  ec.clear();
  EnterRuntime rt;
  sockaddr_storage sa;
  socklen_t len = 0;
  bool dual = false;
  if (int e = resolve(network, address, true, &sa, &len, &dual); e != 0) {
    ec = errno_ec(e);
    return Listener();
  }
  int err = 0;
  int fd = listen_socket(sa, len, dual, &err);
  if (fd < 0 && dual && (err == EAFNOSUPPORT || err == EADDRNOTAVAIL)) {
    // No IPv6 here: the IPv4 wildcard.
    auto port = reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port;
    std::memset(&sa, 0, sizeof(sa));
    auto* s4 = reinterpret_cast<sockaddr_in*>(&sa);
    s4->sin_family = AF_INET;
    s4->sin_port = port;
    s4->sin_addr.s_addr = htonl(INADDR_ANY);
    fd = listen_socket(sa, sizeof(sockaddr_in), false, &err);
  }
  if (fd < 0) {
    ec = errno_ec(err);
    return Listener();
  }
  NetFd* f = new_netfd(fd, ec);
  if (f == nullptr) return Listener();
  fill_addrs(f, nullptr);
  return NetAccess::listener(f);
}

Listener listen(std::string_view network, std::string_view address) {
  std::error_code ec;
  Listener l = listen(network, address, ec);
  throw_if(ec, "goro::net::listen");
  return l;
}

Conn dial_deadline(std::string_view network, std::string_view address, Clock::time_point deadline,
                   std::error_code& ec) noexcept {
  ec.clear();
  EnterRuntime rt;
  sockaddr_storage sa;
  socklen_t len = 0;
  bool dual = false;
  if (int e = resolve(network, address, false, &sa, &len, &dual); e != 0) {
    ec = errno_ec(e);
    return Conn();
  }
  long sfd = new_socket(sa.ss_family);
  if (sfd < 0) {
    ec = errno_ec(static_cast<int>(-sfd));
    return Conn();
  }
  int fd = static_cast<int>(sfd);
  bool connected = false;
  long r = sys(SYS_connect, fd, &sa, len);
  if (r == 0 || r == -EISCONN) {
    connected = true;
  } else if (r != -EINPROGRESS && r != -EALREADY && r != -EINTR) {
    sys_close(fd);
    ec = errno_ec(static_cast<int>(-r));
    return Conn();
  }
  NetFd* f = new_netfd(fd, ec);
  if (f == nullptr) return Conn();
  Conn c = NetAccess::conn(f);  // owns f from here on: an early return closes it
  if (!connected) {
    std::int64_t when = to_ns(deadline);
    if (when != 0) poll_set_deadline(f->pd, when, kPollWrite);
    for (;;) {
      if (int e = poll_wait(f->pd, kPollWrite); e != kPollOk) {
        ec = poll_ec(e);
        return Conn();
      }
      int soerr = 0;
      socklen_t sl = sizeof(soerr);
      if (long g = sys(SYS_getsockopt, f->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl); g != 0) {
        soerr = static_cast<int>(-g);
      }
      if (soerr == EINPROGRESS || soerr == EALREADY || soerr == EINTR) continue;
      if (soerr == EISCONN) break;
      if (soerr != 0) {
        ec = errno_ec(soerr);
        return Conn();
      }
      sockaddr_storage peer;
      socklen_t pl = sizeof(peer);
      if (sys(SYS_getpeername, f->fd, &peer, &pl) == 0) break;
      // A spurious wake-up: not connected yet. Wait again.
    }
    if (when != 0) poll_set_deadline(f->pd, 0, kPollWrite);
  }
  set_nodelay(f->fd);
  fill_addrs(f, &sa);
  return c;
}

Conn dial_deadline(std::string_view network, std::string_view address, Clock::time_point deadline) {
  std::error_code ec;
  Conn c = dial_deadline(network, address, deadline, ec);
  throw_if(ec, "goro::net::dial");
  return c;
}

Conn dial(std::string_view network, std::string_view address, std::error_code& ec) noexcept {
  return dial_deadline(network, address, no_deadline, ec);
}

Conn dial(std::string_view network, std::string_view address) {
  return dial_deadline(network, address, no_deadline);
}

Conn dial_timeout(std::string_view network, std::string_view address, Clock::duration timeout,
                  std::error_code& ec) noexcept {
  // Go: a zero timeout means none; a negative one has already passed.
  Clock::time_point d = timeout == Clock::duration::zero() ? no_deadline : Clock::now() + timeout;
  return dial_deadline(network, address, d, ec);
}

Conn dial_timeout(std::string_view network, std::string_view address, Clock::duration timeout) {
  std::error_code ec;
  Conn c = dial_timeout(network, address, timeout, ec);
  throw_if(ec, "goro::net::dial_timeout");
  return c;
}

}  // namespace goro::net
