// netpoll_uring.cpp - the io_uring backend of the network poller (GORO_NETPOLL=io_uring).
// The contract is in netpoll.hpp, the descriptor and wait protocol in netpoll.cpp, the choice
// between this backend and epoll's in netpoll_backend.cpp. No liburing: the ring is set up and
// mmap'd here and every call is a raw syscall through sys(), so an interposed libc never
// re-enters the runtime.
//
// What it owns
// ------------
// One io_uring instance (SQ 256 entries, CQ 16384, IORING_SETUP_SUBMIT_ALL), both rings and the
// SQE array mapped once (IORING_FEAT_SINGLE_MMAP), and a table of slots indexed by fd (chunks of
// 4096, allocated on first use, never freed; fds up to 4M). A slot holds
//     key       the user_data of the poll request armed for the fd: (seq << 32) | fd, where
//               seq is a fresh 31-bit number per netpoll_backend_open (never 0; bit 63 of a
//               user_data marks a POLL_REMOVE's own CQE); 0: not open
//     tag       the descriptor's tag (pointer | generation << 48), handed to ready()
//     removing  the key a close is waiting to see gone (0: none)
// The key is not the tag because the contract's close names only the fd while an event names
// only its user_data: the slot table maps fd → (key, tag), and the fd inside the key maps a
// completion back to its slot, so one table serves both directions.
//
//  * open: fstat rejects regular files, directories and block devices with EPERM (what epoll
//    does: they cannot be polled; io_uring would instead complete a poll on them at once), then
//    under sq_lock: new key, slot ← (key, tag), and one IORING_OP_POLL_ADD with
//    IORING_POLL_ADD_MULTI, mask POLLIN|POLLPRI|POLLOUT|POLLRDHUP|EPOLLET, user_data = key.
//    Multishot poll is edge-triggered unless IORING_POLL_ADD_LEVEL is given (EPOLLET is accepted
//    and is the default): every wake-up of the fd's wait queue that matches the mask posts one CQE
//    with IORING_CQE_F_MORE, as an epoll ET edge would, and arming checks the current state, so
//    an fd already ready when armed posts at once. The descriptor's semaphore in netpoll.cpp
//    records the edge until a waiter consumes it, exactly as with epoll.
//  * A CQE without IORING_CQE_F_MORE ends the request (the CQ was full when it had to post;
//    -ECANCELED when the thread that submitted it has exited: the kernel cancels such a
//    request at its next event, since that thread can no longer run its task work; ...). If the
//    slot still holds that key the reaper submits a new POLL_ADD with the same key; arming polls
//    the current state, so readiness that came in between is not lost. A character device that
//    cannot be polled completes every poll at once: after two such ends in a row with no F_MORE CQE
//    between, it is left unarmed (it is always ready; its waiters never see EAGAIN). Sockets, pipes
//    and anonymous fds are always re-armed. Other errors are reported as readiness both ways (the
//    retried syscall reports the real error) and re-armed at most twice in a row.
//  * close: under sq_lock, key ← 0 in the slot, removing ← key, and IORING_OP_POLL_REMOVE
//    for the old key (its own CQE has user_data kRemove | key). The removed request ends with
//    -ECANCELED, and every CQE still in flight for it names the old key: the slot no longer
//    holds it (0, or a new open's key with another seq), so they are dropped, not re-armed. A
//    re-arm decides under sq_lock too, so it is either submitted before the POLL_REMOVE
//    (which then removes it) or sees key 0. A POLL_REMOVE that finds the request busy (an
//    event's task work is pending for it) fails with -EALREADY and leaves it armed: it is
//    submitted again, until it succeeds (then the request's last CQE follows) or finds
//    nothing (-ENOENT: the request had ended). close then *waits* for that end, because a
//    poll request holds a reference to the file: returning earlier would let the caller's
//    close(2) leave the socket open (a listener still accepting, a peer not seeing EOF), which
//    epoll never does. A reaper that sees the end clears `removing`; since the closing thread
//    may be the only one that could reap, and cannot deliver events (only netpoll's caller
//    can), it also reads the CQEs posted since its POLL_REMOVE without consuming them
//    (entries at or after the head are never overwritten), retrying on -EALREADY itself. It
//    yields meanwhile (sched_yield, then 20 µs sleeps): the end takes one task-work round trip
//    of the thread that armed the request. A close still waiting after 5 s prints once what it
//    sees (close_stuck_warning) and goes on waiting.
//  * The break channel is an IORING_OP_NOP with user_data 0 (kBreak): it completes inside the
//    io_uring_enter that submits it, in the breaking thread, so its CQE is posted and the
//    sleeper woken with one syscall and no second thread involved. (An eventfd polled through
//    the ring would cost the eventfd write plus task work on the thread that armed its poll.)
//    A break CQE reaped by a blocking poll is consumed (counted in *breaks); one reaped by a
//    non-blocking poll sets break_pending, which the next blocking poll consumes before it
//    sleeps: "a pending break still ends the next blocking poll".
//
// Concurrency
// -----------
// The SQ is single-producer: sq_lock serializes filling SQEs *and* the io_uring_enter that
// submits them (submission is synchronous, no SQPOLL), so the SQ is empty whenever sq_lock is
// free. Taken by open, close, break and re-arms. The CQ is single-consumer: cq_lock covers
// reading CQEs, advancing the CQ head and calling ready(). Lock order: cq_lock ▸ sq_lock (a
// reaper re-arms while holding cq_lock; open/close/break never take cq_lock).
//  1. Non-blocking poll (delay 0: find_runnable, sysmon): if the CQ is empty and has no
//     overflow, return 0 with no syscall at all (epoll needs one). Else try_lock(cq_lock);
//     if another thread holds it, return 0: the holder is reaping (it reaps to the tail it
//     reads after taking the lock) or is the blocking poller asleep in the kernel, which the
//     kernel wakes for any CQE left in the ring. Either way nothing is stranded: a CQE stays in
//     the ring until someone reaps it, like an event in epoll's ready list.
//  2. Blocking poll (the timer sleeper; netpoll.cpp has only one at a time): takes cq_lock
//     (holders other than a blocking poller hold it for a reap only: it yields until free),
//     consumes break_pending, reaps, re-arms, and if that delivered nothing sleeps in
//     io_uring_enter(GETEVENTS, min_complete 1, IORING_ENTER_EXT_ARG with a relative timespec:
//     nanosecond timeouts) *while holding cq_lock*. Since nobody else can advance the head
//     meanwhile, "at least one CQE beyond the head" is exactly "something to deliver": any CQE
//     posted while it sleeps (an event, a re-arm's, a break's NOP) wakes it, and no
//     non-blocking poll can take the break it is waiting for. Then it reaps once and returns.
//     A second blocking poller, should one ever exist, that finds the first asleep waits in
//     the kernel for a CQE or its timeout without the lock and returns 0.
//  3. Overflow: after a reap, if IORING_SQ_CQ_OVERFLOW is set, io_uring_enter(GETEVENTS, 0)
//     moves the kernel's overflow list into the CQ and the reap goes on (IORING_FEAT_NODROP:
//     nothing is dropped).
//
// Which thread runs what: the kernel posts a poll CQE from task work of the thread that
// submitted the POLL_ADD (io_uring without DEFER_TASKRUN), interrupting it if it sleeps
// (TWA_SIGNAL: an interruptible sleep ends, most syscalls restart, a few such as epoll_wait
// return EINTR), and kicking it if it runs — so an event costs a wake-up or an interrupt of
// that M besides the poller's wake-up. This is why the backend is slower than epoll's here.
// COOP_TASKRUN is not used: it would leave the CQE unposted while its submitter sleeps on a futex
// (stuck events). DEFER_TASKRUN needs a single submitting thread, which an M:N runtime does not
// have. poll runs on an M's g0; open/close/break anywhere.
#include <linux/io_uring.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>

#include "base/lock.hpp"
#include "base/platform.hpp"
#include "base/raw_log.hpp"
#include "netpoll/netpoll.hpp"
#include "netpoll/netpoll_backend.hpp"

namespace goro::internal {

namespace {

constexpr unsigned kSqEntries = 256;
constexpr unsigned kCqEntries = 16384;
constexpr std::uint64_t kBreak = 0;                        // user_data of a break NOP
constexpr std::uint64_t kRemove = std::uint64_t{1} << 63;  // POLL_REMOVE's own CQE: kRemove | key
constexpr std::uint32_t kPollMask = POLLIN | POLLPRI | POLLOUT | POLLRDHUP | EPOLLET;

// --- The ring (written once by uring_backend_init, under netpoll.cpp's init lock).
int ring_fd = -1;
std::uint32_t* sq_ktail;  // kernel-shared words: accessed with __atomic builtins
std::uint32_t* sq_kflags;
std::uint32_t sq_mask;
io_uring_sqe* sqes;
std::uint32_t* cq_khead;
std::uint32_t* cq_ktail;
std::uint32_t cq_mask;
io_uring_cqe* cqes;

// --- Submission (under sq_lock).
Lock sq_lock;
std::uint32_t sq_tail = 0;  // our copy of the SQ tail
unsigned sq_pending = 0;    // SQEs filled and not yet submitted
std::uint32_t next_seq = 0;

// --- Reaping (under cq_lock).
Lock cq_lock;
bool break_pending = false;                // a non-blocking reap took a break CQE
std::atomic<bool> blocking_holder{false};  // cq_lock is held by a poller asleep in the kernel

// --- The fd table.
struct Slot {
  std::atomic<std::uint64_t> key{0};       // user_data of the armed request; 0: not open
  std::atomic<std::uint64_t> tag{0};       // the descriptor's tag
  std::atomic<std::uint32_t> ends{0};      // request ends in a row without an F_MORE CQE between
  std::atomic<bool> chr{false};            // a character device (may not support poll)
  std::atomic<std::uint64_t> removing{0};  // the key a close waits to see gone; 0: none
};
constexpr int kChunkBits = 12;
constexpr int kChunks = 1024;  // fds below 1024 << 12 = 4M
std::atomic<Slot*> chunks[kChunks];

Slot* slot_at(int fd, bool create) {
  if (fd < 0 || (fd >> kChunkBits) >= kChunks) return nullptr;
  std::atomic<Slot*>& c = chunks[fd >> kChunkBits];
  Slot* s = c.load(std::memory_order_acquire);
  if (s == nullptr) {
    if (!create) return nullptr;
    auto* fresh = new (std::nothrow) Slot[std::size_t{1} << kChunkBits];
    if (fresh == nullptr) return nullptr;
    if (c.compare_exchange_strong(s, fresh, std::memory_order_acq_rel)) {
      s = fresh;
    } else {
      delete[] fresh;  // another opener won; s is its chunk
    }
  }
  return &s[fd & ((1 << kChunkBits) - 1)];
}

int key_fd(std::uint64_t key) {
  return static_cast<int>(static_cast<std::uint32_t>(key));
}

[[noreturn]] void backend_fatal(const char* what, long err) {
  RawBuf b;
  b.str("fatal error: netpoll (io_uring): ").str(what).str(" failed, errno ").dec(-err).str("\n");
  b.flush();
  die();
}

constexpr std::int64_t kCloseWarnNs = 5'000'000'000;

// A close that has waited kCloseWarnNs for its poll request to end: what it sees.
void close_stuck_warning(int fd, std::uint64_t key, std::uint32_t from, std::uint32_t seen,
                         std::uint32_t tail, int retries, std::uint64_t removing) {
  RawBuf b;
  b.str("goro: netpoll (io_uring): close of fd ")
      .dec(fd)
      .str(" has waited 5 s for its poll request to end: key 0x")
      .hex(key)
      .str(", removing 0x")
      .hex(removing)
      .str(", CQ head ")
      .udec(__atomic_load_n(cq_khead, __ATOMIC_ACQUIRE))
      .str(" tail ")
      .udec(tail)
      .str(", read from ")
      .udec(from)
      .str(" to ")
      .udec(seen)
      .str(", overflow ")
      .udec((__atomic_load_n(sq_kflags, __ATOMIC_RELAXED) & IORING_SQ_CQ_OVERFLOW) != 0)
      .str(", POLL_REMOVE retries ")
      .dec(retries)
      .str("\n");
  b.flush();
}

long enter(unsigned to_submit, unsigned min_complete, unsigned flags, const void* arg,
           std::size_t argsz) {
  return sys(SYS_io_uring_enter, ring_fd, to_submit, min_complete, flags, arg, argsz);
}

// Under sq_lock: submits what sq_push queued. Returns when the kernel has consumed all of it
// (each SQE's own failure, if any, comes back as its CQE: IORING_SETUP_SUBMIT_ALL).
void sq_submit() {
  if (sq_pending == 0) return;
  __atomic_store_n(sq_ktail, sq_tail, __ATOMIC_RELEASE);
  unsigned left = sq_pending;
  for (int tries = 0; left > 0;) {
    long r = enter(left, 0, 0, nullptr, 0);
    if (r > 0) {
      left -= static_cast<unsigned>(r);
      continue;
    }
    if (r == -EINTR) continue;
    // No request memory (-EAGAIN), or a CQ backlog the kernel wants drained first (-EBUSY):
    // transient; whoever holds cq_lock drains it.
    if ((r == 0 || r == -EAGAIN || r == -EBUSY) && ++tries < 100000) {
      sys(SYS_sched_yield);
      continue;
    }
    backend_fatal("io_uring_enter (submit)", r);
  }
  sq_pending = 0;
}

// Under sq_lock: fills the next SQE (submitting first if the SQ is full).
void sq_push(std::uint8_t op, int fd, std::uint32_t poll_events, std::uint32_t len,
             std::uint64_t addr, std::uint64_t user_data) {
  if (sq_pending == kSqEntries) sq_submit();
  io_uring_sqe* e = &sqes[sq_tail & sq_mask];
  std::memset(e, 0, sizeof(*e));
  e->opcode = op;
  e->fd = fd;
  e->poll32_events = poll_events;  // little-endian: the 32-bit mask as is
  e->len = len;
  e->addr = addr;
  e->user_data = user_data;
  sq_tail++;
  sq_pending++;
}

void push_poll_add(int fd, std::uint64_t key) {
  sq_push(IORING_OP_POLL_ADD, fd, kPollMask, IORING_POLL_ADD_MULTI, 0, key);
}

// One reap pass's state: the caller's callback, and the re-arms it owes.
struct Reap {
  void (*ready)(std::uint64_t, int, void*);
  void* arg;
  int* breaks;
  bool blocking;
  int got = 0;
  int nrearm = 0;
  std::uint64_t rearm[64];
};

// Submits the re-arms collected in r (any thread; takes sq_lock). A slot whose key changed
// since (closed, maybe reopened) is skipped: see "close" above.
void flush_rearm(Reap* r) {
  if (r->nrearm == 0) return;
  LockGuard hold(sq_lock);
  for (int i = 0; i < r->nrearm; i++) {
    std::uint64_t key = r->rearm[i];
    Slot* s = slot_at(key_fd(key), false);
    if (s != nullptr && s->key.load(std::memory_order_relaxed) == key) {
      push_poll_add(key_fd(key), key);
    }
  }
  sq_submit();
  r->nrearm = 0;
}

int cqe_modes(std::int32_t res) {
  auto ev = static_cast<std::uint32_t>(res);
  int modes = 0;
  if ((ev & (POLLIN | POLLPRI | POLLRDHUP | POLLHUP | POLLERR)) != 0) modes |= kPollRead;
  if ((ev & (POLLOUT | POLLHUP | POLLERR)) != 0) modes |= kPollWrite;
  if ((ev & (POLLPRI | POLLRDHUP | POLLHUP | POLLERR)) != 0) modes |= kPollHup;
  return modes;
}

// Under cq_lock: one CQE.
void handle(Reap* r, std::uint64_t ud, std::int32_t res, std::uint32_t flags) {
  if (ud == kBreak) {
    if (r->blocking) {
      (*r->breaks)++;
    } else {
      break_pending = true;  // for the next blocking poll
    }
    return;
  }
  if ((ud & kRemove) != 0) {
    // The removal of a closed fd's request. -EALREADY: the request was busy (its event's task
    // work was pending) and stays armed: try again. -ENOENT: it had ended already (its last
    // CQE is posted). 0: it is cancelled; its -ECANCELED CQE follows.
    std::uint64_t key = ud & ~kRemove;
    if (res == -EALREADY) {
      LockGuard hold(sq_lock);
      sq_push(IORING_OP_POLL_REMOVE, -1, 0, 0, key, ud);
      sq_submit();
    } else if (res != 0) {
      Slot* s = slot_at(key_fd(key), false);
      std::uint64_t k = key;
      if (s != nullptr) s->removing.compare_exchange_strong(k, 0, std::memory_order_release);
    }
    return;
  }
  Slot* s = slot_at(key_fd(ud), false);
  if (s == nullptr) return;
  if ((flags & IORING_CQE_F_MORE) == 0) {  // the request ended: a close waiting for it is done
    std::uint64_t k = ud;
    s->removing.compare_exchange_strong(k, 0, std::memory_order_release);
  }
  // A seqlock-style read of (key, tag): close zeroes key, then a new open stores tag (release)
  // and key, all under sq_lock. A tag read here that a later open stored makes the second key
  // read see that key or a newer one: such a tag is never paired with the old key.
  if (s->key.load(std::memory_order_acquire) != ud) return;  // closed since: stale
  std::uint64_t tag = s->tag.load(std::memory_order_acquire);
  if (s->key.load(std::memory_order_relaxed) != ud) return;
  bool again = true;
  if (res >= 0) {
    if (int modes = cqe_modes(res); modes != 0) {
      r->ready(tag, modes, r->arg);
      r->got++;
    }
    if ((flags & IORING_CQE_F_MORE) != 0) {
      s->ends.store(0, std::memory_order_relaxed);
      return;
    }
    // Ended with an event: the CQ was full, or the file completes polls at once (no ->poll).
    if (s->chr.load(std::memory_order_relaxed)) {
      again = s->ends.fetch_add(1, std::memory_order_relaxed) < 1;
    }
  } else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN && res != -ENOMEM) {
    r->ready(tag, kPollRead | kPollWrite | kPollHup, r->arg);  // the retried syscall reports it
    r->got++;
    again = s->ends.fetch_add(1, std::memory_order_relaxed) < 2;
  }
  if (!again) return;
  if (r->nrearm == static_cast<int>(sizeof(r->rearm) / sizeof(r->rearm[0]))) flush_rearm(r);
  r->rearm[r->nrearm++] = ud;
}

// Under cq_lock: takes every CQE up to the tail (and the kernel's overflow list behind it).
void reap(Reap* r) {
  for (int round = 0; round < 8; round++) {
    std::uint32_t head = __atomic_load_n(cq_khead, __ATOMIC_RELAXED);  // only we write it
    std::uint32_t tail = __atomic_load_n(cq_ktail, __ATOMIC_ACQUIRE);
    for (; head != tail; head++) {
      const io_uring_cqe& c = cqes[head & cq_mask];
      handle(r, c.user_data, c.res, c.flags);
    }
    __atomic_store_n(cq_khead, head, __ATOMIC_RELEASE);
    if ((__atomic_load_n(sq_kflags, __ATOMIC_ACQUIRE) & IORING_SQ_CQ_OVERFLOW) == 0) return;
    enter(0, 0, IORING_ENTER_GETEVENTS, nullptr, 0);  // flushes the overflow list into the CQ
  }
}

bool cq_maybe_work() {
  return __atomic_load_n(cq_khead, __ATOMIC_RELAXED) !=
             __atomic_load_n(cq_ktail, __ATOMIC_ACQUIRE) ||
         (__atomic_load_n(sq_kflags, __ATOMIC_RELAXED) & IORING_SQ_CQ_OVERFLOW) != 0;
}

// Sleeps until the CQ holds a CQE beyond the head, delay_ns passes (< 0: no limit), or a
// signal. Returns io_uring_enter's result.
long wait_cqe(std::int64_t delay_ns) {
  __kernel_timespec ts{};
  io_uring_getevents_arg a{};
  if (delay_ns >= 0) {
    ts.tv_sec = delay_ns / 1000000000;
    ts.tv_nsec = delay_ns % 1000000000;
    a.ts = reinterpret_cast<std::uint64_t>(&ts);
  }
  long rc = enter(0, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &a, sizeof(a));
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
    backend_fatal("io_uring_enter (wait)", rc);
  }
  return rc;
}

}  // namespace

int uring_backend_init() noexcept {
  io_uring_params p{};
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL;
  p.cq_entries = kCqEntries;
  long fd = sys(SYS_io_uring_setup, kSqEntries, &p);
  if (fd < 0) return static_cast<int>(-fd);  // ENOSYS, EPERM (seccomp, io_uring_disabled), ...
  constexpr std::uint32_t kNeed =
      IORING_FEAT_SINGLE_MMAP | IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG;
  if ((p.features & kNeed) != kNeed) {
    sys(SYS_close, fd);
    return ENOSYS;
  }
  std::size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(std::uint32_t);
  std::size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  std::size_t ring_size = sq_size > cq_size ? sq_size : cq_size;
  long ring = sys(SYS_mmap, nullptr, ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                  fd, IORING_OFF_SQ_RING);
  if (ring < 0 && ring > -4096) {
    sys(SYS_close, fd);
    return static_cast<int>(-ring);
  }
  std::size_t sqes_size = p.sq_entries * sizeof(io_uring_sqe);
  long sq_entries_map = sys(SYS_mmap, nullptr, sqes_size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
  if (sq_entries_map < 0 && sq_entries_map > -4096) {
    sys(SYS_munmap, ring, ring_size);
    sys(SYS_close, fd);
    return static_cast<int>(-sq_entries_map);
  }
  auto* base = reinterpret_cast<char*>(ring);
  sq_ktail = reinterpret_cast<std::uint32_t*>(base + p.sq_off.tail);
  sq_kflags = reinterpret_cast<std::uint32_t*>(base + p.sq_off.flags);
  sq_mask = *reinterpret_cast<std::uint32_t*>(base + p.sq_off.ring_mask);
  auto* sq_array = reinterpret_cast<std::uint32_t*>(base + p.sq_off.array);
  for (std::uint32_t i = 0; i < p.sq_entries; i++) sq_array[i] = i;  // SQE i sits in slot i
  sqes = reinterpret_cast<io_uring_sqe*>(sq_entries_map);
  cq_khead = reinterpret_cast<std::uint32_t*>(base + p.cq_off.head);
  cq_ktail = reinterpret_cast<std::uint32_t*>(base + p.cq_off.tail);
  cq_mask = *reinterpret_cast<std::uint32_t*>(base + p.cq_off.ring_mask);
  cqes = reinterpret_cast<io_uring_cqe*>(base + p.cq_off.cqes);
  sq_tail = __atomic_load_n(sq_ktail, __ATOMIC_RELAXED);
  ring_fd = static_cast<int>(fd);
  return 0;
}

int uring_backend_open(int fd, std::uint64_t tag) noexcept {
  struct stat st;
  if (long r = sys(SYS_fstat, fd, &st); r != 0) return static_cast<int>(-r);
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode)) return EPERM;
  Slot* s = slot_at(fd, true);
  if (s == nullptr) return fd < 0 ? EBADF : ((fd >> kChunkBits) >= kChunks ? ENOSPC : ENOMEM);
  LockGuard hold(sq_lock);
  if (s->key.load(std::memory_order_relaxed) != 0) return EEXIST;
  next_seq = next_seq >= 0x7fffffffu ? 1 : next_seq + 1;  // 1..2^31-1: bit 63 marks kRemove
  std::uint64_t key = (std::uint64_t{next_seq} << 32) | static_cast<std::uint32_t>(fd);
  s->chr.store(S_ISCHR(st.st_mode), std::memory_order_relaxed);
  s->ends.store(0, std::memory_order_relaxed);
  s->tag.store(tag, std::memory_order_release);
  s->key.store(key, std::memory_order_release);
  push_poll_add(fd, key);
  sq_submit();
  return 0;
}

int uring_backend_close(int fd) noexcept {
  Slot* s = slot_at(fd, false);
  if (s == nullptr) return ENOENT;
  std::uint64_t key;
  std::uint32_t from;  // CQEs from here on were posted after the POLL_REMOVE was submitted
  {
    LockGuard hold(sq_lock);
    key = s->key.exchange(0, std::memory_order_seq_cst);
    if (key == 0) return ENOENT;
    s->removing.store(key, std::memory_order_relaxed);
    from = __atomic_load_n(cq_ktail, __ATOMIC_ACQUIRE);
    sq_push(IORING_OP_POLL_REMOVE, -1, 0, 0, key, kRemove | key);
    sq_submit();
  }
  // Wait until the request is gone, so that the file is not kept open after close(2) (a
  // listener would still accept, a peer would not see EOF): a reaper clears `removing` when it
  // sees the request end. This thread may be the only one that could reap, and it cannot
  // deliver events (only netpoll's caller can), so it also *reads* the CQEs posted since its
  // POLL_REMOVE without consuming them (entries at or after the head are not overwritten),
  // and retries the removal itself on -EALREADY.
  std::uint32_t seen = from;
  std::int64_t started = 0;
  int retries = 0;
  for (int i = 0; s->removing.load(std::memory_order_acquire) == key; i++) {
    std::uint32_t head = __atomic_load_n(cq_khead, __ATOMIC_ACQUIRE);
    std::uint32_t tail = __atomic_load_n(cq_ktail, __ATOMIC_ACQUIRE);
    if (static_cast<std::int32_t>(head - seen) > 0) seen = head;  // reaped: a reaper saw those
    bool gone = false;
    for (; seen != tail && !gone; seen++) {
      const io_uring_cqe& c = cqes[seen & cq_mask];
      if (c.user_data == key && (c.flags & IORING_CQE_F_MORE) == 0) gone = true;
      if (c.user_data == (kRemove | key)) {
        if (c.res == -EALREADY) {
          LockGuard hold(sq_lock);
          sq_push(IORING_OP_POLL_REMOVE, -1, 0, 0, key, kRemove | key);
          sq_submit();
          retries++;
        } else if (c.res != 0) {
          gone = true;  // -ENOENT: it had ended before
        }
      }
    }
    if (gone) break;
    if (i < 64) {
      sys(SYS_sched_yield);
    } else {
      // The end takes one task-work round trip; seconds mean it is not coming (a hang seen once
      // in a loaded test run, not understood): say what this close sees, once, and go on waiting.
      if (started == 0) started = nanotime();
      if (started > 0 && nanotime() - started > kCloseWarnNs) {
        started = -1;
        close_stuck_warning(fd, key, from, seen, tail, retries, s->removing.load());
      }
      __kernel_timespec ts{0, 20000};  // its task work is late: look again in 20 µs
      sys(SYS_nanosleep, &ts, nullptr);
    }
  }
  return 0;
}

int uring_backend_poll(std::int64_t delay_ns, void (*ready)(std::uint64_t, int, void*), void* arg,
                       int* breaks) noexcept {
  Reap r;
  r.ready = ready;
  r.arg = arg;
  r.breaks = breaks;
  r.blocking = delay_ns != 0;
  if (!r.blocking) {
    if (!cq_maybe_work() || !cq_lock.try_lock()) return 0;  // see step 1
    reap(&r);
    cq_lock.unlock();
    flush_rearm(&r);
    return r.got;
  }
  while (!cq_lock.try_lock()) {
    if (blocking_holder.load(std::memory_order_acquire)) {
      wait_cqe(delay_ns);  // step 2's second blocking poller
      return 0;
    }
    sys(SYS_sched_yield);  // a non-blocking reap: short
  }
  if (break_pending) {
    break_pending = false;
    (*breaks)++;
  }
  reap(&r);
  flush_rearm(&r);  // before sleeping: a re-armed request's CQE must be able to wake us
  if (r.got == 0 && *breaks == 0) {
    blocking_holder.store(true, std::memory_order_release);
    wait_cqe(delay_ns);
    blocking_holder.store(false, std::memory_order_relaxed);
    reap(&r);
  }
  cq_lock.unlock();
  flush_rearm(&r);
  return r.got;
}

void uring_backend_break() noexcept {
  LockGuard hold(sq_lock);
  sq_push(IORING_OP_NOP, -1, 0, 0, 0, kBreak);
  sq_submit();
}

}  // namespace goro::internal
