// goro/net.hpp - TCP networking on the runtime's network poller (Go's package net, TCP part).
//
// listen() a Listener, accept() Conns from it, or dial() one; read and write a Conn from as
// many goroutines as you like. A call that must wait parks the goroutine: its OS thread runs
// other goroutines, and the runtime's poller (epoll, edge-triggered, inside the scheduler)
// readies it when the socket is ready, its deadline passes or it is closed. Plain threads may
// use the same objects; they block on a futex and are readied by the same poller.
//
// Errors. Every operation that can fail comes in two forms: one throws std::system_error, the
// other is noexcept and reports through a std::error_code& argument (cleared on success). The
// codes are std::generic_category() errno values, compare them with std::errc:
//   std::errc::timed_out             a deadline (or a dial timeout) passed
//   std::errc::bad_file_descriptor   the Conn/Listener is closed, or was closed while the call
//                                    was blocked (Go's net.ErrClosed)
//   std::errc::invalid_argument      an unknown network or a malformed address
//   anything else                    the system's error, unchanged (connection_refused,
//                                    connection_reset, broken_pipe, too_many_files_open, ...)
// End of stream is not an error: read() returns 0.
//
// Addresses are "host:port" with a numeric port (0-65535; 0 lets listen() pick one):
//   "127.0.0.1:80", "[::1]:80"   IPv4 and bracketed IPv6 literals (no zone suffix)
//   "localhost:80"               127.0.0.1 (::1 with network "tcp6")
//   ":80"                        listen: every local address (dual-stack IPv6 with "tcp" where
//                                available); dial: the local system, as "localhost"
// Names other than localhost are not resolved yet (std::errc::invalid_argument). Networks:
// "tcp" (the host's form decides IPv4 or IPv6), "tcp4", "tcp6".
//
// Deadlines are absolute std::chrono::steady_clock times, as in Go: once a direction's
// deadline has passed, blocked and later calls in that direction fail with timed_out (even
// if data is ready) until a new deadline (or no_deadline) is set. Setting one while a call is
// blocked applies to that call: an earlier one makes it fail then, a later one lets it wait on.
//
// Thread-safety: every member function may be called concurrently from any goroutines and
// plain threads, except that an object must not be destroyed, moved or assigned while another
// call on it is in progress. Reads are serialized with reads and writes with writes (one
// write()'s bytes are never interleaved with another's), so a reader, a writer and a closer
// can work on one Conn at once. close() wakes every blocked call on the object.
//
// Memory ordering: bytes written by write() on one end are seen by the read() that returns
// them on the other; close() happens-before the wake-up of the calls it interrupts.
//
// Costs: one heap object per Conn/Listener. An uncontended read or write costs a few atomic
// operations and one syscall when the socket is ready (two syscalls and a park when it is
// not); it takes no runtime lock and allocates nothing. Sockets are non-blocking and
// close-on-exec; TCP_NODELAY is set on every Conn (as Go does); writes use MSG_NOSIGNAL (a
// reset peer yields broken_pipe, never SIGPIPE).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>

#include "goro/export.hpp"

namespace goro {

namespace internal {
struct NetFd;
struct NetAccess;
}  // namespace internal

namespace net {

using Clock = std::chrono::steady_clock;

/// The "no deadline" value for Conn::set_deadline and friends (Go's zero time.Time).
inline constexpr Clock::time_point no_deadline{};

/// A TCP connection, from Listener::accept() or dial(). Owns its socket: destroying a Conn that
/// is still open closes it. Movable, not copyable; a default-constructed or moved-from Conn is
/// empty (valid() is false; its operations fail with bad_file_descriptor).
class GORO_API Conn {
 public:
  Conn() noexcept = default;
  Conn(Conn&& o) noexcept : fd_(o.fd_) { o.fd_ = nullptr; }
  Conn& operator=(Conn&& o) noexcept;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  /// Closes the connection if it is still open (errors are ignored).
  ~Conn();

  /// Whether this object holds a connection (open or closed).
  bool valid() const noexcept { return fd_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }

  /// Reads up to n bytes into buf. Blocks until at least one byte is available, the peer
  /// closed its side (returns 0: end of stream), the read deadline passes (timed_out), the
  /// Conn is closed (bad_file_descriptor) or an error occurs (connection_reset, ...). n == 0
  /// returns 0 at once. Returns the number of bytes read.
  std::size_t read(void* buf, std::size_t n);
  std::size_t read(void* buf, std::size_t n, std::error_code& ec) noexcept;

  /// Reads exactly n bytes, unless the stream ends first: returns n, or fewer (the bytes
  /// there were) at end of stream. Errors as read(); the throwing form loses the bytes read
  /// before the error, the error_code form returns their count.
  std::size_t read_full(void* buf, std::size_t n);
  std::size_t read_full(void* buf, std::size_t n, std::error_code& ec) noexcept;

  /// Writes all n bytes (Go's Write): blocks while the socket buffer is full, until
  /// everything is written or the write deadline passes (timed_out), the Conn is closed
  /// (bad_file_descriptor) or an error occurs (broken_pipe, connection_reset, ...). Returns n;
  /// the error_code form returns the bytes written before the error.
  std::size_t write(const void* buf, std::size_t n);
  std::size_t write(const void* buf, std::size_t n, std::error_code& ec) noexcept;
  std::size_t write(std::string_view s) { return write(s.data(), s.size()); }

  /// Closes the connection: blocked and later calls fail with bad_file_descriptor; the
  /// socket itself is closed once the last call in progress has returned. Never blocks for
  /// long. Closing twice fails with bad_file_descriptor.
  void close();
  void close(std::error_code& ec) noexcept;

  /// Shuts down the sending side (shutdown(SHUT_WR)): the peer's reads then see end of
  /// stream; reading from this Conn goes on. Never blocks.
  void close_write();
  void close_write(std::error_code& ec) noexcept;

  /// Sets the read and write deadlines (see "Deadlines" above). no_deadline clears them.
  /// Never blocks for long. Fails only with bad_file_descriptor.
  void set_deadline(Clock::time_point t);
  void set_deadline(Clock::time_point t, std::error_code& ec) noexcept;
  /// Sets the deadline of read() and read_full().
  void set_read_deadline(Clock::time_point t);
  void set_read_deadline(Clock::time_point t, std::error_code& ec) noexcept;
  /// Sets the deadline of write().
  void set_write_deadline(Clock::time_point t);
  void set_write_deadline(Clock::time_point t, std::error_code& ec) noexcept;

  /// This end's and the peer's address, "ip:port" or "[ipv6]:port" (IPv4-mapped IPv6
  /// addresses are shown as IPv4), as they were when the connection was made. Empty for an
  /// empty Conn. Throws std::bad_alloc.
  std::string local_addr() const;
  std::string remote_addr() const;

  /// The socket's file descriptor, for setsockopt() and the like, or -1 for an empty Conn.
  /// Do not close it, change its O_NONBLOCK flag or read/write it behind the Conn's back.
  /// With SO_RCVLOWAT set on it, a read() that follows a read() which returned less than
  /// asked for waits until the low-water mark is reached (the kernel reports the socket
  /// readable only then), where plain read(2) would return the bytes already there.
  int native_handle() const noexcept;

 private:
  friend struct internal::NetAccess;
  explicit Conn(internal::NetFd* fd) noexcept : fd_(fd) {}
  internal::NetFd* fd_ = nullptr;
};

/// A listening TCP socket (Go's net.Listener). Movable, not copyable; destroying an open
/// Listener closes it. Thread-safety as for Conn (accept() calls are serialized).
class GORO_API Listener {
 public:
  Listener() noexcept = default;
  Listener(Listener&& o) noexcept : fd_(o.fd_) { o.fd_ = nullptr; }
  Listener& operator=(Listener&& o) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  bool valid() const noexcept { return fd_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }

  /// Waits for and returns the next connection. Fails with bad_file_descriptor once the
  /// Listener is closed (also when closed while blocked), with too_many_files_open (EMFILE)
  /// or too_many_files_open_in_system (ENFILE) when the process or system is out of file
  /// descriptors (the pending connection stays queued: a later accept() can take it), or with
  /// another accept(2) error. Connections aborted before they were accepted are skipped.
  Conn accept();
  Conn accept(std::error_code& ec) noexcept;

  /// Closes the listening socket; blocked and later accept() calls fail with
  /// bad_file_descriptor. Closing twice fails with bad_file_descriptor.
  void close();
  void close(std::error_code& ec) noexcept;

  /// The address it listens on, with the actual port ("127.0.0.1:43127", "[::]:8080").
  std::string addr() const;

  /// The listening socket's file descriptor (see Conn::native_handle), or -1.
  int native_handle() const noexcept;

 private:
  friend struct internal::NetAccess;
  explicit Listener(internal::NetFd* fd) noexcept : fd_(fd) {}
  internal::NetFd* fd_ = nullptr;
};

/// Listens on a local address (Go's net.Listen): "tcp", "127.0.0.1:0" picks a free port
/// (Listener::addr() tells which). SO_REUSEADDR is set; the backlog is 4096, capped by the
/// system (net.core.somaxconn). Never blocks for long. Errors: invalid_argument, address_in_use,
/// too_many_files_open, permission_denied, ...
GORO_API Listener listen(std::string_view network, std::string_view address);
GORO_API Listener listen(std::string_view network, std::string_view address,
                         std::error_code& ec) noexcept;

/// Connects to a remote address (Go's net.Dial), blocking until the connection is
/// established or fails (connection_refused, network_unreachable, timed_out when the system
/// gives up, too_many_files_open, ...).
GORO_API Conn dial(std::string_view network, std::string_view address);
GORO_API Conn dial(std::string_view network, std::string_view address,
                   std::error_code& ec) noexcept;

/// As dial(), but fails with timed_out once `timeout` has passed without a connection (Go's
/// net.DialTimeout). As in Go, a zero timeout means none; a negative one fails at once unless
/// the connection completes immediately (as it may on loopback).
GORO_API Conn dial_timeout(std::string_view network, std::string_view address,
                           Clock::duration timeout);
GORO_API Conn dial_timeout(std::string_view network, std::string_view address,
                           Clock::duration timeout, std::error_code& ec) noexcept;

/// As dial(), with an absolute deadline for establishing the connection (no_deadline: none).
GORO_API Conn dial_deadline(std::string_view network, std::string_view address,
                            Clock::time_point deadline);
GORO_API Conn dial_deadline(std::string_view network, std::string_view address,
                            Clock::time_point deadline, std::error_code& ec) noexcept;

}  // namespace net
}  // namespace goro
