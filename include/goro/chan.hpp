// goro/chan.hpp - channels (Go's chan T).
//
//   goro::Chan<int> ch;                  // nil channel: send/recv block forever
//   goro::Chan<int> jobs(100);           // buffered, capacity 100 (make(chan int, 100))
//   goro::Chan<std::string> done(0);     // unbuffered (rendezvous)
//
//   jobs.send(42);                       // blocks while full; throws goro::ChanClosed if closed
//   std::optional<int> v = jobs.recv();  // blocks while empty; nullopt once closed and drained
//   for (int job : jobs) { ... }         // receives until closed and drained
//   jobs.close();                        // wakes every waiting receiver
//
// A Chan is a handle: cheap to copy (an atomic reference count), and every copy refers to the
// same channel, so goroutines and threads share one by holding copies. Operations are const:
// they act on the channel, not on the handle. Every operation works
// from goroutines (which park) and plain threads (which block), and both kinds of waiter can
// meet on one channel. Select over several channels is in <goro/select.hpp>.
//
// Go's rules hold: values from one sender arrive in the order sent; on an unbuffered channel a
// value passes directly from sender to receiver and the sender returns only once it was taken;
// close() wakes every waiting receiver and sender; receives drain buffered values after close,
// then report closed; sending on a closed channel and closing a closed channel throw
// goro::ChanClosed (catchable, unlike Go's panic), and so does a send that was blocked when the
// channel was closed.
//
// Element types: any T that is nothrow-move-constructible (values move through the channel
// under its lock, where a throwing move could not be undone); move-only types work.
//
// Leak checking: after goro::debug::track_leaks() (goro/debug.hpp) every handle of a channel
// made from then on records its own address, so that goro::debug::find_leaks can tell where
// each handle lives. Handles must then move only through their constructors and assignment
// (never relocated with memcpy), as for any type that is not trivially copyable.
//
// Memory ordering: a send happens-before the receive that gets its value completes; a close
// happens-before a receive that reports closed; on an unbuffered channel the receive
// happens-before the send returns (Go's memory model).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "goro/export.hpp"

namespace goro {

/// Thrown by send() on a closed channel (also when the channel is closed while the send is
/// blocked), by close() of a closed or nil channel, and by select() when a chosen send case's
/// channel is closed.
class GORO_API ChanClosed : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

namespace internal {

// The channel itself lives in the library (src/chan/chan.cpp); Chan<T> is a typed handle.
struct ChanCore;

// How the library moves and destroys elements of a channel's type.
struct ElemOps {
  std::size_t size;
  std::size_t align;
  void (*move)(void* dst, void* src) noexcept;  // move-construct *dst from *src
  void (*destroy)(void* p) noexcept;
};

template <class T>
inline constexpr ElemOps kElemOps = {
    sizeof(T), alignof(T),
    [](void* dst, void* src) noexcept { ::new (dst) T(std::move(*static_cast<T*>(src))); },
    [](void* p) noexcept { static_cast<T*>(p)->~T(); }};

enum class RecvResult { kValue, kClosed, kWouldBlock };

GORO_API ChanCore* chan_make(std::size_t cap, const ElemOps* ops);
GORO_API void chan_retain(ChanCore* c) noexcept;
GORO_API void chan_release(ChanCore* c) noexcept;
// Moves *src into the channel. block=false: returns false instead of blocking. c == null (nil
// channel): blocks forever, or returns false. Throws ChanClosed.
GORO_API bool chan_send(ChanCore* c, void* src, bool block);
// Move-constructs a received value into the uninitialized storage dst on kValue.
GORO_API RecvResult chan_recv(ChanCore* c, void* dst, bool block);
GORO_API void chan_close(ChanCore* c);
GORO_API std::size_t chan_len(const ChanCore* c) noexcept;
GORO_API std::size_t chan_cap(const ChanCore* c) noexcept;

// Handle tracking for goro::debug::find_leaks (design in src/chan/chan.cpp, "Handle
// tracking"). A channel made while chan_track_on is set records the address of each of its
// handles: the constructors, the assignment and the destructor below report where a handle
// appears and disappears. chan_track_on is set by goro::debug::track_leaks() or GORO_LEAKCHECK=1
// and never cleared. Off, a copy and a destruction cost what they did (one more predictable
// branch inside the library call) and a move one predictable branch on chan_tracking().
GORO_API extern std::atomic<bool> chan_track_on;
inline bool chan_tracking() noexcept {
  return chan_track_on.load(std::memory_order_relaxed);
}
// chan_make, then records `handle` as the channel's first handle if tracking is on.
GORO_API ChanCore* chan_make_at(std::size_t cap, const ElemOps* ops, const void* handle);
// chan_retain / chan_release for the handle at `handle`.
GORO_API void chan_retain_at(ChanCore* c, const void* handle) noexcept;
GORO_API void chan_release_at(ChanCore* c, const void* handle) noexcept;
// A handle of c moved from `from` to `to` (c non-null).
GORO_API void chan_track_move(ChanCore* c, const void* from, const void* to) noexcept;
// The handles at a and b exchanged their channels: a now holds ca (which b held), b holds cb.
GORO_API void chan_track_swap(const void* a, ChanCore* ca, const void* b, ChanCore* cb) noexcept;

}  // namespace internal

template <class T>
class Chan {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "goro::Chan<T> needs a nothrow-move-constructible T");
  static_assert(!std::is_reference_v<T> && !std::is_const_v<T>,
                "goro::Chan<T>: T must be a "
                "non-const object type");

 public:
  using value_type = T;

  /// A nil channel (Go's zero value): send and recv block forever, try_* never succeed, a
  /// select case on it never fires, close() throws ChanClosed.
  Chan() noexcept = default;

  /// A new channel with room for `capacity` buffered values; 0 makes it unbuffered. Throws
  /// std::bad_alloc.
  explicit Chan(std::size_t capacity) {
    c_ = internal::chan_make_at(capacity, &internal::kElemOps<T>, this);
  }

  Chan(const Chan& o) noexcept : c_(o.c_) {
    if (c_ != nullptr) internal::chan_retain_at(c_, this);
  }
  Chan(Chan&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {
    if (c_ != nullptr && internal::chan_tracking()) internal::chan_track_move(c_, &o, this);
  }
  Chan& operator=(Chan o) noexcept {
    std::swap(c_, o.c_);
    if (internal::chan_tracking()) internal::chan_track_swap(this, c_, &o, o.c_);
    return *this;
  }
  /// Dropping the last handle frees the channel and any values still buffered in it. (A
  /// goroutine blocked on the channel holds a handle, so it cannot be freed under it.)
  ~Chan() {
    if (c_ != nullptr) internal::chan_release_at(c_, this);
  }

  /// Sends v, blocking while the channel is full (unbuffered: until a receiver takes it).
  /// Throws ChanClosed if the channel is or becomes closed; v is then not delivered.
  void send(T v) const { internal::chan_send(c_, &v, true); }

  /// Sends v only if that needs no waiting (a receiver is waiting, or there is buffer room).
  /// Returns whether it did; on false, v is left as it was. Throws ChanClosed if closed.
  bool try_send(T&& v) const { return internal::chan_send(c_, &v, false); }
  bool try_send(const T& v) const requires std::is_copy_constructible_v<T> {
    T tmp(v);
    return internal::chan_send(c_, &tmp, false);
  }

  /// Receives a value, blocking while the channel is empty. Returns std::nullopt once the
  /// channel is closed and every buffered value has been received.
  std::optional<T> recv() const {
    Slot s;
    return take(s, internal::chan_recv(c_, s.ptr(), true));
  }

  /// Receives a value only if one is ready now. Returns std::nullopt otherwise; then *closed
  /// (if given) tells whether that is because the channel is closed and drained.
  std::optional<T> try_recv(bool* closed = nullptr) const {
    Slot s;
    internal::RecvResult r = internal::chan_recv(c_, s.ptr(), false);
    if (closed != nullptr) *closed = r == internal::RecvResult::kClosed;
    return take(s, r);
  }

  /// Closes the channel: no more sends; waiting receivers and senders wake (receivers get
  /// std::nullopt after the buffer drains, senders throw ChanClosed). Throws ChanClosed if it
  /// is already closed, or nil.
  void close() const { internal::chan_close(c_); }

  /// Values buffered now (a racy snapshot, like Go's len(ch)); 0 for nil.
  std::size_t len() const noexcept { return internal::chan_len(c_); }
  /// The capacity given at construction; 0 for unbuffered and nil channels.
  std::size_t cap() const noexcept { return internal::chan_cap(c_); }
  /// False for a nil channel.
  explicit operator bool() const noexcept { return c_ != nullptr; }
  /// Whether two handles refer to the same channel.
  friend bool operator==(const Chan& a, const Chan& b) noexcept { return a.c_ == b.c_; }

  /// Range-for support: receives until the channel is closed and drained.
  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(const Chan* ch) : ch_(ch) { ++*this; }
    T& operator*() { return *v_; }
    iterator& operator++() {
      v_.reset();  // T need not be move-assignable
      if (auto x = ch_->recv()) v_.emplace(std::move(*x));
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return !it.v_; }

   private:
    const Chan* ch_ = nullptr;
    std::optional<T> v_;
  };
  iterator begin() const { return iterator(this); }
  std::default_sentinel_t end() const { return {}; }

  /// The library's channel (for goro's own select); not for general use.
  internal::ChanCore* core() const noexcept { return c_; }

 private:
  struct Slot {
    alignas(T) unsigned char buf[sizeof(T)];
    void* ptr() { return buf; }
    T* get() { return std::launder(reinterpret_cast<T*>(buf)); }
  };
  static std::optional<T> take(Slot& s, internal::RecvResult r) {
    if (r != internal::RecvResult::kValue) return std::nullopt;
    std::optional<T> out(std::move(*s.get()));
    s.get()->~T();
    return out;
  }

  internal::ChanCore* c_ = nullptr;
};

}  // namespace goro
