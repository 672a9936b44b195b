// chan.cpp - channels and select (Go's chan.go and select.go).
//
// What it owns: the channel (ChanCore), its wait queues, and select over several of them. The
// typed handle goro::Chan<T> (include/goro/chan.hpp) only moves values in and out.
//
// A channel is a lock, an optional ring buffer of `cap` elements, a closed flag and two wait
// queues of Sudogs (a waiting goroutine or thread plus where its value is: the value to send,
// or the storage to receive into). Invariants, under the lock:
//   * a closed channel has an empty sendq and recvq;
//   * unbuffered: at least one of sendq and recvq is empty.
//
// Unbuffered send (receive is symmetric):
//  1. Lock. Closed: unlock, throw ChanClosed.
//  2. A receiver is waiting: move the value straight into its storage, mark it successful,
//     unlock, ready it (the direct hand-off: the receiver's copy is done).
//  3. Else queue a Sudog on sendq and park; the lock is released by park after the goroutine
//     is switched out. Woken with success: the receiver took the value. Woken without: the
//     channel was closed: throw ChanClosed.
//
// Buffered channels
// -----------------
// The buffer is a lock-free bounded queue (Vyukov's, in crossbeam's ArrayQueue form): each
// slot has a stamp; `tail` and `head` are positions (lap | index, one_lap the power of two
// above cap), each CASed by its own side on its own cache line. A sender claims the slot at
// tail when its stamp equals the position, writes the value, then sets the stamp to pos + 1;
// a receiver claims the slot at head when its stamp is pos + 1, moves the value out, then sets
// it to pos + one_lap (free for the next lap). While one side is between claim and stamp
// (a few instructions, never preempted: EnterRuntime), the other side spins on that slot.
// So a send or receive that finds room or a value takes no lock and makes no system call.
//
// The lock and the wait queues serve the waiters:
//  * head's kWaitBit is set while recvq may be non-empty, tail's while sendq may be; with it
//    set the lock-free path of that side is closed (its CAS, which compares the whole word,
//    fails), so a lock holder that sees a value (free slot) can hand it to a queued receiver
//    (sender) knowing nobody else takes it. `waiting` mirrors the two bits on a quiet line.
//  * A receiver about to wait (blocking recv, select) sets the bit and `waiting` (seq_cst)
//    under the lock, then looks at the ring once more. A lock-free sender, after its push,
//    reads `waiting` (seq_cst). One of the two sees the other: the receiver finds the value,
//    or the sender takes the lock and hands ring values to queued receivers (balance). The
//    same between a sender about to wait on a full ring and a lock-free receiver's pop.
//  * balance (under the lock) moves queued senders' values into free slots and ring values
//    to queued receivers, oldest first, so per-sender FIFO holds; sync_wait_bits clears a bit
//    when its queue is empty.
//  * close sets tail's kClosedBit under the lock: no push succeeds after it (a push in flight
//    completes), buffered values go to queued receivers, then the rest are woken. A receive
//    that finds the ring empty with kClosedBit set reports closed.
// Select polls its buffered cases lock-free first (as far as the first unbuffered case in its
// random order), then under its locks; before queueing it announces itself on its buffered
// channels and polls once more.
//
// Select (select_impl):
//  1. Shuffle the cases (uniform random poll order) and lock every distinct channel in address
//     order (the lock order between channels, so two selects never deadlock).
//  2. In poll order, perform the first case that can proceed; unlock all.
//  3. None and a default case: unlock all, return -1. A deadline already past fires.
//  4. Else queue one Sudog per channel case, all pointing to one SelectState on this stack,
//     arm a timer for the earliest deadline case, and park (unlocking every channel).
//  5. A waker (a send, receive or close on one of the channels, or the timer) must win the
//     SelectState's `done` CAS to complete a case: queue scans skip Sudogs of selects that
//     were already won, so exactly one case fires and no value is lost or duplicated.
//  6. Woken: stop the timer, lock all again, dequeue the remaining Sudogs, unlock, report the
//     case that fired.
//
// Handle tracking (for goro::debug::find_leaks, src/debug/leak.cpp)
// ------------------------------------------------------------------
// To call a goroutine blocked on a channel leaked, find_leaks must know where every handle of
// that channel lives. Conservative scanning for the ChanCore pointer would over-count (dead
// copies, the runtime's own spills in the parked frames) and so could never prove that none
// is left elsewhere. Instead, a channel made while tracking is on (chan_track_on: set by
// goro::debug::track_leaks() or GORO_LEAKCHECK=1, never cleared) is `tracked` for life:
//  1. Each handle reports its own address: chan_make_at (construction), chan_retain_at (copy),
//     chan_track_move (move), chan_track_swap (assignment), chan_release_at (destruction).
//  2. The addresses go into the channel's HandleSet, an open-addressing hash set under
//     reg_lock, a leaf lock of its own (not the channel's lock: a Chan<Chan<T>> moves handles
//     of one channel while holding another's lock, so using channel locks could deadlock).
//  3. The reference count changes under reg_lock too, so a reader holding it sees
//     refs == handles.n exactly when the registry is complete; a failed allocation marks the
//     set `broken` (the channel can no longer be judged).
//  4. Tracked channels are linked in one list (tracked_lock), which chan_leak_visit walks.
// Rejected: an intrusive list through the handles (each Chan<T> would grow from 8 to 24 bytes
// with tracking off too); a process-wide address map (one lock for every copy in the process).
// Cost with tracking off: a copy and a destruction test `tracked` (on the reference count's
// cache line) inside the call they already made; a move tests chan_track_on inline. With
// tracking on: a lock and a hash-set update per handle operation (bench: leak_test's
// LeakTrack.HandleCopyCost).
//
// Threads: any thread may run any operation; waiters are goroutines or plain threads through
// park/ready. The ring's operations are lock-free; the rest runs under the lock. Lock order:
// tracked_lock ▸ channel locks (by address) ▸ a timer heap's lock (select arms its timer before
// unlocking) ▸ sched.lock (ready); reg_lock is a leaf. Timer callbacks run with no timer lock held.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "base/lock.hpp"
#include "base/platform.hpp"
#include "base/raw_log.hpp"
#include "debug/leak.hpp"
#include "goro/chan.hpp"
#include "goro/select.hpp"
#include "sched/proc.hpp"
#include "time/timer.hpp"

namespace goro::internal {

namespace {

struct SelectState;

struct Sudog {
  G* g = nullptr;
  void* elem = nullptr;  // send: the value; recv: uninitialized storage
  Sudog* next = nullptr;
  Sudog* prev = nullptr;
  SelectState* sel = nullptr;  // non-null for a select's case
  int case_index = 0;
  bool queued = false;   // in a wait queue (under the channel's lock)
  bool success = false;  // the operation completed (recv: a value; send: taken)
  // For find_leaks: one past the top of the runtime frame that queued it (its CFA), so that
  // [g->sp, frame_top) is known to hold runtime frames only.
  std::uintptr_t frame_top = 0;
};

// The CFA of the calling function (the address just above its return address).
#define GORO_FRAME_TOP() (reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)) + 16)

struct SelectState {
  std::atomic<std::uint32_t> done{0};
  int fired = -1;
  bool fired_success = false;
  // For find_leaks (read under a channel lock while a case is queued): whether the select
  // waits for a deadline too, and how many channel cases it queued.
  bool timed = false;
  int ncases = 0;
};

struct WaitQ {
  Sudog* first = nullptr;
  Sudog* last = nullptr;

  bool empty() const { return first == nullptr; }
  void enqueue(Sudog* s) {
    s->next = nullptr;
    s->prev = last;
    if (last != nullptr) {
      last->next = s;
    } else {
      first = s;
    }
    last = s;
    s->queued = true;
  }
  void remove(Sudog* s) {
    if (!s->queued) return;
    if (s->prev != nullptr) {
      s->prev->next = s->next;
    } else {
      first = s->next;
    }
    if (s->next != nullptr) {
      s->next->prev = s->prev;
    } else {
      last = s->prev;
    }
    s->next = s->prev = nullptr;
    s->queued = false;
  }
  // The first waiter that may still complete: skips (and drops) the Sudogs of selects that
  // another case already won.
  Sudog* dequeue() {
    while (Sudog* s = first) {
      remove(s);
      if (s->sel == nullptr) return s;
      std::uint32_t expect = 0;
      if (s->sel->done.compare_exchange_strong(expect, 1, std::memory_order_acq_rel)) {
        s->sel->fired = s->case_index;
        return s;
      }
    }
    return nullptr;
  }
};

// The addresses of a tracked channel's handles (see "Handle tracking"): linear probing over a
// power-of-two table, 0 for an empty slot, deletion by backward shift (no tombstones). Each
// address is stored complemented (~a): the table (and any freed copy of it) must not look like
// it points into the goroutine stacks that find_leaks scans memory for.
struct HandleSet {
  std::uintptr_t* slots = nullptr;
  std::size_t cap = 0;  // 0 or a power of two >= 8
  std::size_t n = 0;
  bool broken = false;  // an insert ran out of memory: the set is incomplete for good

  static std::size_t hash(std::uintptr_t a) { return (a >> 3) * 0x9E3779B97F4A7C15ull; }
  void insert(std::uintptr_t handle) noexcept {
    const std::uintptr_t a = ~handle;
    if (broken) return;
    if ((n + 1) * 4 > cap * 3 && !grow()) {
      broken = true;
      return;
    }
    std::size_t i = hash(a) & (cap - 1);
    while (slots[i] != 0) i = (i + 1) & (cap - 1);
    slots[i] = a;
    n++;
  }
  void erase(std::uintptr_t handle) noexcept {
    const std::uintptr_t a = ~handle;
    if (cap == 0) return;
    std::size_t i = hash(a) & (cap - 1);
    while (slots[i] != a) {
      if (slots[i] == 0) return;  // not there (broken set)
      i = (i + 1) & (cap - 1);
    }
    // Backward shift: move later entries of the probe run into the hole.
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & (cap - 1); slots[j] != 0; j = (j + 1) & (cap - 1)) {
      std::size_t home = hash(slots[j]) & (cap - 1);
      // slots[j] may move to the hole if its home is not in (hole, j] (cyclically).
      bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
      if (!stays) {
        slots[hole] = slots[j];
        hole = j;
      }
    }
    slots[hole] = 0;
    n--;
  }
  bool grow() noexcept {
    std::size_t ncap = cap == 0 ? 8 : cap * 2;
    auto* ns = static_cast<std::uintptr_t*>(std::calloc(ncap, sizeof(std::uintptr_t)));
    if (ns == nullptr) return false;
    for (std::size_t i = 0; i < cap; i++) {
      if (slots[i] == 0) continue;
      std::size_t k = hash(slots[i]) & (ncap - 1);
      while (ns[k] != 0) k = (k + 1) & (ncap - 1);
      ns[k] = slots[i];
    }
    std::free(slots);
    slots = ns;
    cap = ncap;
    return true;
  }
};

}  // namespace

struct ChanCore {
  std::atomic<std::int64_t> refs{1};
  // --- Handle tracking (see above). `tracked` is immutable after chan_make_at.
  bool tracked = false;
  Lock reg_lock;              // guards handles (and refs, when tracked)
  HandleSet handles;          // under reg_lock
  ChanCore* tnext = nullptr;  // the tracked list, under tracked_lock
  ChanCore* tprev = nullptr;
  Lock lock;
  const ElemOps* ops;
  std::size_t cap;
  std::size_t slotsize = 0;   // buffered: stamp + element, rounded up to their alignment
  std::size_t elemoff = 0;    // buffered: the element's offset in its slot
  std::uint64_t one_lap = 0;  // buffered: the smallest power of two > cap (see "The ring")
  bool closed = false;        // under lock (buffered: tail's kClosedBit says it lock-free)
  WaitQ recvq, sendq;
  unsigned char* buf = nullptr;
  // The ring's positions (buffered channels), each on its own cache line: senders write tail,
  // receivers head. Bits: kClosedBit (tail), kWaitBit (head: recvq may be non-empty; tail:
  // sendq may be non-empty); the rest is the position (lap | index).
  alignas(64) std::atomic<std::uint64_t> tail{0};
  alignas(64) std::atomic<std::uint64_t> head{0};
  // kRecvWaiting / kSendWaiting, set and cleared together with head's / tail's kWaitBit, on a
  // line of its own that rarely changes: the fast paths read it after every operation, which
  // must not pull the other side's position line into their cache.
  alignas(64) std::atomic<std::uint32_t> waiting{0};
  char pad_[64 - sizeof(std::atomic<std::uint32_t>)];

  std::atomic<std::uint64_t>* stamp(std::uint64_t index) {
    return reinterpret_cast<std::atomic<std::uint64_t>*>(buf + index * slotsize);
  }
  void* elem(std::uint64_t index) { return buf + index * slotsize + elemoff; }
};

namespace {

// Finishes a Sudog's operation on the waker's side (channel locked) for a completed select
// case; for plain waiters the fields are read by the waiter itself.
void mark_done(Sudog* s, bool success) {
  s->success = success;
  if (s->sel != nullptr) s->sel->fired_success = success;
}

// The record to queue for the caller: its goroutine (known to EnterRuntime) or its thread's.
G* self_of(const EnterRuntime& enter) {
  return enter.g() != nullptr ? enter.g() : waiter();
}

bool unlock_chan(G*, void* arg) {
  static_cast<ChanCore*>(arg)->lock.unlock();
  return true;
}

// Under c->lock: queues the caller on q (elem: its value to send, or its storage to receive
// into) and parks; park releases the lock. Returns whether the operation completed (false: the
// channel was closed). frame_top: the calling runtime frame's CFA (see Sudog).
bool wait_locked(ChanCore* c, WaitQ* q, void* elem, const EnterRuntime& enter, WaitReason reason,
                 std::uintptr_t frame_top) {
  Sudog me;
  me.g = self_of(enter);
  me.elem = elem;
  me.frame_top = frame_top;
  q->enqueue(&me);
  park_self(me.g, unlock_chan, c, reason);
  return me.success;
}

[[noreturn]] void block_forever(WaitReason reason) {
  park(nullptr, nullptr, reason);
  fatal("chan: a goroutine blocked forever was woken");
}

// Under c->lock, unbuffered channel, a waiting sender s present: receive into dst.
void recv_from_sender(ChanCore* c, Sudog* s, void* dst) {
  if (dst != nullptr) c->ops->move(dst, s->elem);
  mark_done(s, true);
}

// ---- The ring (buffered channels; see "Buffered channels" above) ----

constexpr std::uint64_t kClosedBit = 1ull << 63;
constexpr std::uint64_t kWaitBit = 1ull << 62;
constexpr std::uint64_t kPosMask = kWaitBit - 1;

enum class Ring { kOk, kNo, kClosed };  // kNo: full (push), empty (pop), or must lock (fast)

// Waits out the other side's operation in flight (a slot claimed, its stamp not yet
// written): a few instructions, unless the OS preempted that thread in between.
void ring_spin(int& spins) {
  if (++spins < 64) {
    cpu_relax();
  } else {
    sched_yield();
  }
}

// After a lost CAS on head or tail: another thread just took the same side's position, so that
// cache line is in its core's cache. Retrying at once would pull the line back for one
// operation and lose it again; a pause that doubles with each loss (up to ~64 pauses) lets
// the winner run a burst of operations with the line local. With 4 senders and 4 receivers on
// 2 cores (bench chan_throughput -p 4) this took a value through the channel in 14 ns instead
// of 37 (Go: 33); one sender and one receiver never lose the CAS and pay nothing.
void ring_backoff(int& losses) {
  constexpr int kMaxShift = 6;
  const int n = 1 << (losses < kMaxShift ? losses++ : kMaxShift);
  for (int k = 0; k < n; k++) cpu_relax();
}

std::uint64_t ring_next(const ChanCore* c, std::uint64_t pos) {
  const std::uint64_t index = pos & (c->one_lap - 1);
  return index + 1 < c->cap ? pos + 1 : (pos & ~(c->one_lap - 1)) + c->one_lap;
}

// Moves *src into the ring. locked: the caller holds c->lock (it may push while senders
// wait, and keeps the flag bits); else kNo also when senders wait (kWaitBit: queue behind
// them, under the lock).
Ring ring_push(ChanCore* c, void* src, bool locked) {
  std::uint64_t t = c->tail.load(std::memory_order_relaxed);
  for (int spins = 0, losses = 0;;) {
    if ((t & kClosedBit) != 0) return Ring::kClosed;
    if (!locked && (t & kWaitBit) != 0) return Ring::kNo;
    const std::uint64_t pos = t & kPosMask;
    const std::uint64_t index = pos & (c->one_lap - 1);
    std::atomic<std::uint64_t>* stamp = c->stamp(index);
    const std::uint64_t st = stamp->load(std::memory_order_acquire);
    if (st == pos) {
      if (c->tail.compare_exchange_weak(t, ring_next(c, pos) | (t & ~kPosMask),
                                        std::memory_order_seq_cst, std::memory_order_relaxed)) {
        c->ops->move(c->elem(index), src);
        stamp->store(pos + 1, std::memory_order_release);
        return Ring::kOk;
      }
      ring_backoff(losses);
      continue;  // t reloaded by the failed CAS
    }
    if (st + c->one_lap == pos + 1) {
      // The slot holds last lap's value: full, or a receiver is taking it right now.
      // seq_cst: ordered after a sender's announce_sender (see "Buffered channels").
      if ((c->head.load(std::memory_order_seq_cst) & kPosMask) + c->one_lap == pos) {
        return Ring::kNo;
      }
    }
    ring_spin(spins);
    t = c->tail.load(std::memory_order_relaxed);
  }
}

// Moves the ring's head into dst (destroys it if dst is null). locked: as ring_push, for
// receivers (kWaitBit in head: receivers wait; the fast path must lock).
Ring ring_pop(ChanCore* c, void* dst, bool locked) {
  std::uint64_t h = c->head.load(std::memory_order_relaxed);
  for (int spins = 0, losses = 0;;) {
    if (!locked && (h & kWaitBit) != 0) return Ring::kNo;
    const std::uint64_t pos = h & kPosMask;
    const std::uint64_t index = pos & (c->one_lap - 1);
    std::atomic<std::uint64_t>* stamp = c->stamp(index);
    const std::uint64_t st = stamp->load(std::memory_order_acquire);
    if (st == pos + 1) {
      if (c->head.compare_exchange_weak(h, ring_next(c, pos) | (h & ~kPosMask),
                                        std::memory_order_seq_cst, std::memory_order_relaxed)) {
        void* e = c->elem(index);
        if (dst != nullptr) c->ops->move(dst, e);
        c->ops->destroy(e);
        stamp->store(pos + c->one_lap, std::memory_order_release);
        return Ring::kOk;
      }
      ring_backoff(losses);
      continue;  // h reloaded by the failed CAS
    }
    if (st == pos) {
      // Empty, or a sender is filling this slot right now.
      const std::uint64_t t = c->tail.load(std::memory_order_seq_cst);  // as in ring_push
      if ((t & kPosMask) == pos) return (t & kClosedBit) != 0 ? Ring::kClosed : Ring::kNo;
    }
    ring_spin(spins);
    h = c->head.load(std::memory_order_relaxed);
  }
}

// Positions as element counts, for len() and the locked fullness checks.
std::uint64_t ring_linear(const ChanCore* c, std::uint64_t pos) {
  pos &= kPosMask;
  return (pos / c->one_lap) * c->cap + (pos & (c->one_lap - 1));
}

bool ring_empty(ChanCore* c) {
  return (c->tail.load(std::memory_order_seq_cst) & kPosMask) ==
         (c->head.load(std::memory_order_seq_cst) & kPosMask);
}

bool ring_full(ChanCore* c) {
  return (c->head.load(std::memory_order_seq_cst) & kPosMask) + c->one_lap ==
         (c->tail.load(std::memory_order_seq_cst) & kPosMask);
}

constexpr std::uint32_t kRecvWaiting = 1;
constexpr std::uint32_t kSendWaiting = 2;

// Under c->lock: a receiver (or select) about to look at the ring one last time before it
// queues: from here no lock-free receive, and a lock-free send looks at `waiting` after its
// push (so one of the two sees the other).
void announce_receiver(ChanCore* c) {
  if ((c->head.load(std::memory_order_relaxed) & kWaitBit) == 0) {
    c->head.fetch_or(kWaitBit, std::memory_order_seq_cst);
  }
  c->waiting.fetch_or(kRecvWaiting, std::memory_order_seq_cst);
}

// The same for a sender.
void announce_sender(ChanCore* c) {
  if ((c->tail.load(std::memory_order_relaxed) & kWaitBit) == 0) {
    c->tail.fetch_or(kWaitBit, std::memory_order_seq_cst);
  }
  c->waiting.fetch_or(kSendWaiting, std::memory_order_seq_cst);
}

// Under c->lock: clears the wait bits of an empty queue (set again by the next waiter).
void sync_wait_bits(ChanCore* c) {
  const std::uint32_t w = c->waiting.load(std::memory_order_relaxed);
  if (c->recvq.empty() && (w & kRecvWaiting) != 0) {
    c->head.fetch_and(~kWaitBit, std::memory_order_seq_cst);
    c->waiting.fetch_and(~kRecvWaiting, std::memory_order_seq_cst);
  }
  if (c->sendq.empty() && (w & kSendWaiting) != 0) {
    c->tail.fetch_and(~kWaitBit, std::memory_order_seq_cst);
    c->waiting.fetch_and(~kSendWaiting, std::memory_order_seq_cst);
  }
}

// Under c->lock: hands ring values to waiting receivers, oldest first, while both exist. With
// head's kWaitBit set (recvq non-empty) only lock holders pop, so a value seen is ours.
void feed_receivers(ChanCore* c) {
  while (!c->recvq.empty() && !ring_empty(c)) {
    Sudog* r = c->recvq.dequeue();
    if (r == nullptr) break;
    Ring got = ring_pop(c, r->elem, true);
    if (got != Ring::kOk) fatal("chan: a buffered value vanished under the channel lock");
    mark_done(r, true);
    ready(r->g);
  }
}

// Under c->lock: moves waiting senders' values into the ring's free slots, oldest first.
// With tail's kWaitBit set (sendq non-empty) only lock holders push.
void refill_from_senders(ChanCore* c) {
  while (!c->closed && !c->sendq.empty() && !ring_full(c)) {
    Sudog* s = c->sendq.dequeue();
    if (s == nullptr) break;
    if (ring_push(c, s->elem, true) != Ring::kOk) {
      fatal("chan: a free buffer slot vanished under the channel lock");
    }
    mark_done(s, true);
    ready(s->g);
  }
}

// Under c->lock: moves waiting senders' values into free slots and ring values to waiting
// receivers until neither can proceed. Leaves the wait bits alone (see sync_wait_bits).
void balance(ChanCore* c) {
  for (;;) {
    const bool sent = !c->closed && !c->sendq.empty() && !ring_full(c);
    if (sent) refill_from_senders(c);
    const bool fed = !c->recvq.empty() && !ring_empty(c);
    if (fed) feed_receivers(c);
    if (!sent && !fed) return;
  }
}

// The fast paths' follow-ups: after a lock-free push a receiver may have queued meanwhile
// (it set head's kWaitBit before looking at the ring); after a pop, a sender.
void after_push(ChanCore* c) {
  if ((c->waiting.load(std::memory_order_seq_cst) & kRecvWaiting) == 0) return;
  LockGuard hold(c->lock);
  balance(c);
  sync_wait_bits(c);
}

void after_pop(ChanCore* c) {
  if ((c->waiting.load(std::memory_order_seq_cst) & kSendWaiting) == 0) return;
  LockGuard hold(c->lock);
  balance(c);
  sync_wait_bits(c);
}

// Under c->lock, buffered, not closed: completes the send now if it can: to a waiting receiver
// (the ring is then empty), or into the ring if no sender waits ahead of it.
bool send_locked(ChanCore* c, void* src) {
  balance(c);
  if (Sudog* r = c->recvq.dequeue()) {
    c->ops->move(r->elem, src);
    mark_done(r, true);
    ready(r->g);
    return true;
  }
  return c->sendq.empty() && ring_push(c, src, true) == Ring::kOk;
}

// Under c->lock, buffered: completes the receive now if it can (kOk, or kClosed once closed
// and drained), after the receivers waiting ahead of it were served.
Ring recv_locked(ChanCore* c, void* dst) {
  balance(c);
  Ring r = ring_pop(c, dst, true);
  if (r == Ring::kOk) balance(c);
  return r;
}

}  // namespace

ChanCore* chan_make(std::size_t cap, const ElemOps* ops) {
  EnterRuntime enter;
  if (cap > (std::size_t{1} << 40)) throw std::bad_alloc();  // and one_lap stays far below kWaitBit
  const std::size_t align = ops->align < alignof(ChanCore) ? alignof(ChanCore) : ops->align;
  const std::size_t slotalign = ops->align < 8 ? 8 : ops->align;
  const std::size_t elemoff = (8 + ops->align - 1) / ops->align * ops->align;
  const std::size_t slotsize = (elemoff + ops->size + slotalign - 1) / slotalign * slotalign;
  const std::size_t header = (sizeof(ChanCore) + align - 1) / align * align;
  if (cap > (SIZE_MAX - header) / slotsize) throw std::bad_alloc();
  void* mem = ::operator new (header + cap * slotsize, std::align_val_t{align});
  auto* c = ::new (mem) ChanCore;
  c->ops = ops;
  c->cap = cap;
  if (cap > 0) {
    c->slotsize = slotsize;
    c->elemoff = elemoff;
    c->one_lap = std::uint64_t{1} << (64 - __builtin_clzll(cap));  // a power of two > cap
    c->buf = static_cast<unsigned char*>(mem) + header;
    for (std::size_t i = 0; i < cap; i++) {
      ::new (c->buf + i * slotsize) std::atomic<std::uint64_t>(i);
    }
  }
  return c;
}

void chan_retain(ChanCore* c) noexcept {
  c->refs.fetch_add(1, std::memory_order_relaxed);
}

namespace {

Lock tracked_lock;
ChanCore* tracked_head = nullptr;  // under tracked_lock

// Frees a channel whose last handle is gone.
void chan_free(ChanCore* c) noexcept {
  if (c->tracked) {
    {
      LockGuard hold(tracked_lock);
      if (c->tprev != nullptr) {
        c->tprev->tnext = c->tnext;
      } else {
        tracked_head = c->tnext;
      }
      if (c->tnext != nullptr) c->tnext->tprev = c->tprev;
    }
    std::free(c->handles.slots);
  }
  if (c->cap > 0) {
    while (ring_pop(c, nullptr, true) == Ring::kOk) {
    }
  }
  std::size_t align = c->ops->align < alignof(ChanCore) ? alignof(ChanCore) : c->ops->align;
  c->~ChanCore();
  ::operator delete (static_cast<void*>(c), std::align_val_t{align});
}

// GORO_LEAKCHECK=1 turns tracking on before main() (and before any channel the program's
// static initializers make, as far as initialization order allows).
__attribute__((constructor)) void leakcheck_from_env() {
  const char* e = std::getenv("GORO_LEAKCHECK");
  if (e != nullptr && e[0] != 0 && std::strcmp(e, "0") != 0) {
    chan_track_on.store(true, std::memory_order_relaxed);
  }
}

}  // namespace

std::atomic<bool> chan_track_on{false};

void chan_release(ChanCore* c) noexcept {
  EnterRuntime enter;
  if (c->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  chan_free(c);
}

ChanCore* chan_make_at(std::size_t cap, const ElemOps* ops, const void* handle) {
  ChanCore* c = chan_make(cap, ops);
  if (!chan_tracking()) return c;
  EnterRuntime enter;
  c->tracked = true;
  {
    LockGuard hold(c->reg_lock);
    c->handles.insert(reinterpret_cast<std::uintptr_t>(handle));
  }
  LockGuard hold(tracked_lock);
  c->tnext = tracked_head;
  if (tracked_head != nullptr) tracked_head->tprev = c;
  tracked_head = c;
  return c;
}

void chan_retain_at(ChanCore* c, const void* handle) noexcept {
  if (!c->tracked) {
    c->refs.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  EnterRuntime enter;
  LockGuard hold(c->reg_lock);
  c->refs.fetch_add(1, std::memory_order_relaxed);
  c->handles.insert(reinterpret_cast<std::uintptr_t>(handle));
}

void chan_release_at(ChanCore* c, const void* handle) noexcept {
  if (!c->tracked) {
    chan_release(c);
    return;
  }
  EnterRuntime enter;
  bool last;
  {
    LockGuard hold(c->reg_lock);
    c->handles.erase(reinterpret_cast<std::uintptr_t>(handle));
    last = c->refs.fetch_sub(1, std::memory_order_acq_rel) == 1;
  }
  if (last) chan_free(c);
}

void chan_track_move(ChanCore* c, const void* from, const void* to) noexcept {
  if (!c->tracked) return;
  EnterRuntime enter;
  LockGuard hold(c->reg_lock);
  c->handles.erase(reinterpret_cast<std::uintptr_t>(from));
  c->handles.insert(reinterpret_cast<std::uintptr_t>(to));
}

void chan_track_swap(const void* a, ChanCore* ca, const void* b, ChanCore* cb) noexcept {
  if (ca == cb) return;
  if (ca != nullptr) chan_track_move(ca, b, a);
  if (cb != nullptr) chan_track_move(cb, a, b);
}

void chan_leak_visit(ChanVisitor& v) {
  EnterRuntime enter;
  LockGuard hold(tracked_lock);
  for (ChanCore* c = tracked_head; c != nullptr; c = c->tnext) {
    LockGuard hold_chan(c->lock);
    LockGuard hold_reg(c->reg_lock);
    const bool judgeable = !c->handles.broken && c->refs.load(std::memory_order_relaxed) ==
                                                     static_cast<std::int64_t>(c->handles.n);
    v.channel(c, judgeable);
    for (std::size_t i = 0; i < c->handles.cap; i++) {
      if (c->handles.slots[i] != 0) v.handle(~c->handles.slots[i]);
    }
    for (WaitQ* q : {&c->recvq, &c->sendq}) {
      for (Sudog* s = q->first; s != nullptr; s = s->next) {
        ChanWaiter w{s->g, s, s->elem, s->sel, false, false, 0, s->frame_top, sizeof(Sudog)};
        if (s->sel != nullptr) {
          w.select_timed = s->sel->timed;
          w.select_done = s->sel->done.load(std::memory_order_acquire) != 0;
          w.select_cases = s->sel->ncases;
        }
        v.waiter(w);
      }
    }
  }
}

namespace {

// Buffered send when the lock-free push could not complete: full, or senders wait.
bool send_buffered_slow(ChanCore* c, void* src, bool block, const EnterRuntime& enter) {
  c->lock.lock();
  if (c->closed) {
    c->lock.unlock();
    throw ChanClosed("send on closed channel");
  }
  // A blocking sender announces itself before its last look at the ring: a receiver that
  // frees a slot lock-free after this sees the bit and refills from sendq.
  if (block) announce_sender(c);
  const bool sent = send_locked(c, src);
  if (sent || !block) {
    sync_wait_bits(c);
    c->lock.unlock();
    return sent;
  }
  if (!wait_locked(c, &c->sendq, src, enter, WaitReason::kChanSend, GORO_FRAME_TOP())) {
    throw ChanClosed("send on closed channel");
  }
  return true;
}

// Buffered receive when the lock-free pop could not complete: empty, or receivers wait.
RecvResult recv_buffered_slow(ChanCore* c, void* dst, bool block, const EnterRuntime& enter) {
  c->lock.lock();
  // As send_buffered_slow: a sender that pushes lock-free after this sees the bit.
  if (block) announce_receiver(c);
  const Ring r = recv_locked(c, dst);
  if (r != Ring::kNo || !block) {
    sync_wait_bits(c);
    c->lock.unlock();
    return r == Ring::kOk       ? RecvResult::kValue
           : r == Ring::kClosed ? RecvResult::kClosed
                                : RecvResult::kWouldBlock;
  }
  return wait_locked(c, &c->recvq, dst, enter, WaitReason::kChanReceive, GORO_FRAME_TOP())
             ? RecvResult::kValue
             : RecvResult::kClosed;
}

}  // namespace

bool chan_send(ChanCore* c, void* src, bool block) {
  EnterRuntime enter;
  if (c == nullptr) {
    if (!block) return false;
    block_forever(WaitReason::kChanSendNil);
  }
  if (c->cap > 0) {
    // With receivers waiting, the value goes straight to one of them under the lock instead
    // of through the ring.
    if ((c->waiting.load(std::memory_order_relaxed) & kRecvWaiting) == 0) {
      Ring r = ring_push(c, src, false);
      if (r == Ring::kOk) {
        after_push(c);
        return true;
      }
      if (r == Ring::kClosed) throw ChanClosed("send on closed channel");
    }
    return send_buffered_slow(c, src, block, enter);
  }
  c->lock.lock();
  if (c->closed) {
    c->lock.unlock();
    throw ChanClosed("send on closed channel");
  }
  if (Sudog* r = c->recvq.dequeue()) {
    c->ops->move(r->elem, src);
    mark_done(r, true);
    G* g = r->g;
    c->lock.unlock();
    ready(g);
    return true;
  }
  if (!block) {
    c->lock.unlock();
    return false;
  }
  if (!wait_locked(c, &c->sendq, src, enter, WaitReason::kChanSend, GORO_FRAME_TOP())) {
    throw ChanClosed("send on closed channel");
  }
  return true;
}

RecvResult chan_recv(ChanCore* c, void* dst, bool block) {
  EnterRuntime enter;
  if (c == nullptr) {
    if (!block) return RecvResult::kWouldBlock;
    block_forever(WaitReason::kChanReceiveNil);
  }
  if (c->cap > 0) {
    Ring r = ring_pop(c, dst, false);
    if (r == Ring::kOk) {
      after_pop(c);
      return RecvResult::kValue;
    }
    if (r == Ring::kClosed) return RecvResult::kClosed;
    return recv_buffered_slow(c, dst, block, enter);
  }
  c->lock.lock();
  if (Sudog* s = c->sendq.dequeue()) {
    recv_from_sender(c, s, dst);
    G* g = s->g;
    c->lock.unlock();
    ready(g);
    return RecvResult::kValue;
  }
  if (c->closed) {
    c->lock.unlock();
    return RecvResult::kClosed;
  }
  if (!block) {
    c->lock.unlock();
    return RecvResult::kWouldBlock;
  }
  return wait_locked(c, &c->recvq, dst, enter, WaitReason::kChanReceive, GORO_FRAME_TOP())
             ? RecvResult::kValue
             : RecvResult::kClosed;
}

void chan_close(ChanCore* c) {
  EnterRuntime enter;
  if (c == nullptr) throw ChanClosed("close of nil channel");
  c->lock.lock();
  if (c->closed) {
    c->lock.unlock();
    throw ChanClosed("close of closed channel");
  }
  c->closed = true;
  if (c->cap > 0) {
    // From here no push succeeds (a push in flight completes; the ring's readers wait for
    // it). Values still buffered go to waiting receivers first.
    c->tail.fetch_or(kClosedBit, std::memory_order_seq_cst);
    feed_receivers(c);
  }
  // Collect every other waiter (receivers get "closed", senders will throw), ready them
  // unlocked.
  Sudog* wake = nullptr;
  for (WaitQ* q : {&c->recvq, &c->sendq}) {
    while (Sudog* s = q->dequeue()) {
      mark_done(s, false);
      s->next = wake;
      wake = s;
    }
  }
  if (c->cap > 0) sync_wait_bits(c);
  c->lock.unlock();
  while (wake != nullptr) {
    Sudog* s = wake;
    wake = s->next;  // read before ready: s lives on the waiter's stack
    ready(s->g);
  }
}

std::size_t chan_len(const ChanCore* c) noexcept {
  if (c == nullptr) return 0;
  if (c->cap == 0) return 0;
  // A snapshot: exact when no operation is in flight.
  const std::uint64_t h = ring_linear(c, c->head.load(std::memory_order_acquire));
  const std::uint64_t t = ring_linear(c, c->tail.load(std::memory_order_acquire));
  if (t <= h) return 0;
  return t - h > c->cap ? c->cap : static_cast<std::size_t>(t - h);
}

std::size_t chan_cap(const ChanCore* c) noexcept {
  return c == nullptr ? 0 : c->cap;
}

// ---------------------------------------------------------------------------------------------
// select

namespace {

constexpr int kMaxSelectCases = 1024;

struct SelectPark {
  ChanCore** locks;
  int nlocks;
  Timer* timer;  // armed after the goroutine parked, or null
};

void unlock_all(ChanCore** locks, int n) {
  for (int i = n - 1; i >= 0; i--) locks[i]->lock.unlock();
}

// Park's unlock function. The timer is armed before the channels are unlocked: once they are,
// a waker may complete a case and the select may return (and its frame, which holds the
// timer, die) before this function would get to the timer.
bool select_unlock(G*, void* arg) {
  auto* sp = static_cast<SelectPark*>(arg);
  // Copy the lock list first: once the timer is armed it can fire and wake the select, which
  // may return (and its frame, *sp and the lock array included, die) while we still unlock.
  int nlocks = sp->nlocks;
  ChanCore* small[64];
  std::vector<ChanCore*> big;
  ChanCore** locks = small;
  if (nlocks > 64) {
    big.assign(sp->locks, sp->locks + nlocks);
    locks = big.data();
  } else {
    std::copy(sp->locks, sp->locks + nlocks, small);
  }
  if (sp->timer != nullptr) timer_start(sp->timer);
  unlock_all(locks, nlocks);
  return true;
}

struct SelectTimeout {
  SelectState* st;
  G* g;
  int case_index;
};

void select_timer_fired(void* arg, std::int64_t) {
  auto* t = static_cast<SelectTimeout*>(arg);
  std::uint32_t expect = 0;
  if (t->st->done.compare_exchange_strong(expect, 1, std::memory_order_acq_rel)) {
    t->st->fired = t->case_index;
    t->st->fired_success = true;
    ready(t->g);
  }
}

}  // namespace

G* chan_select_timer_g(const Timer* t) noexcept {
  if (t->f != select_timer_fired) return nullptr;
  return static_cast<const SelectTimeout*>(t->arg)->g;
}

int select_impl(SelectCase* cases, int n, bool block) {
  EnterRuntime enter;
  if (n > kMaxSelectCases) throw std::invalid_argument("goro::select: too many cases");
  // 1. Poll order (uniform shuffle) and lock order (distinct channels by address).
  int order[kMaxSelectCases > 0 ? 64 : 1];
  int* pollorder = n <= 64 ? order : new int[static_cast<std::size_t>(n)];
  ChanCore* lockbuf[64];
  ChanCore** locks = n <= 64 ? lockbuf : new ChanCore*[static_cast<std::size_t>(n)];
  struct Cleanup {
    int* p;
    ChanCore** l;
    int* o;
    ChanCore** lb;
    ~Cleanup() {
      if (p != o) delete[] p;
      if (l != lb) delete[] l;
    }
  } cleanup{pollorder, locks, order, lockbuf};

  int npoll = 0, nlocks = 0, deadline_case = -1;
  for (int i = 0; i < n; i++) {
    SelectCase& sc = cases[i];
    sc.ok = false;
    if (sc.kind == CaseKind::kDeadline) {
      if (deadline_case < 0 || sc.deadline < cases[deadline_case].deadline) deadline_case = i;
      continue;
    }
    if (sc.kind == CaseKind::kDefault || sc.c == nullptr) continue;  // nil: never fires
    int j = static_cast<int>(fastrandn(static_cast<std::uint32_t>(npoll + 1)));
    pollorder[npoll] = pollorder[j];
    pollorder[j] = i;
    npoll++;
    locks[nlocks++] = sc.c;
  }
  // 1b. Lock-free first: the buffered cases at the head of the poll order that can complete
  // without a lock (a value to take, a free slot), as chan_send/chan_recv's fast paths. It
  // stops at the first unbuffered case, so the choice stays uniform among ready cases.
  for (int k = 0; k < npoll; k++) {
    const int i = pollorder[k];
    SelectCase& sc = cases[i];
    ChanCore* c = sc.c;
    if (c->cap == 0) break;
    if (sc.kind == CaseKind::kRecv) {
      const Ring r = ring_pop(c, sc.elem, false);
      if (r == Ring::kNo) continue;
      sc.ok = r == Ring::kOk;
      if (sc.ok) after_pop(c);
      return i;
    }
    if ((c->waiting.load(std::memory_order_relaxed) & kRecvWaiting) != 0) continue;
    const Ring r = ring_push(c, sc.elem, false);
    if (r == Ring::kClosed) throw ChanClosed("send on closed channel");
    if (r == Ring::kOk) {
      after_push(c);
      return i;
    }
  }

  std::sort(locks, locks + nlocks);
  nlocks = static_cast<int>(std::unique(locks, locks + nlocks) - locks);

  for (int i = 0; i < nlocks; i++) locks[i]->lock.lock();
  auto unlock_all_synced = [&] {
    for (int i = 0; i < nlocks; i++) {
      if (locks[i]->cap > 0) sync_wait_bits(locks[i]);
    }
    unlock_all(locks, nlocks);
  };
  bool any_buffered = false;
  for (int i = 0; i < nlocks; i++) any_buffered = any_buffered || locks[i]->cap > 0;

  // 2. The first case in poll order that can proceed. A select about to block looks twice:
  // its buffered channels' lock-free senders and receivers do not take the locks it holds,
  // so before queueing it announces itself on them, as a blocking send or receive does (see
  // "Buffered channels"), and polls again.
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) {
      if (!block || !any_buffered) break;
      for (int k = 0; k < npoll; k++) {
        const SelectCase& sc = cases[pollorder[k]];
        if (sc.c->cap == 0) continue;
        if (sc.kind == CaseKind::kRecv) {
          announce_receiver(sc.c);
        } else {
          announce_sender(sc.c);
        }
      }
    }
    for (int k = 0; k < npoll; k++) {
      int i = pollorder[k];
      SelectCase& sc = cases[i];
      ChanCore* c = sc.c;
      if (sc.kind == CaseKind::kRecv) {
        if (c->cap > 0) {
          const Ring r = recv_locked(c, sc.elem);
          if (r == Ring::kNo) continue;
          sc.ok = r == Ring::kOk;
          unlock_all_synced();
          return i;
        }
        if (Sudog* s = c->sendq.dequeue()) {
          recv_from_sender(c, s, sc.elem);
          sc.ok = true;
          G* g = s->g;
          unlock_all_synced();
          ready(g);
          return i;
        }
        if (c->closed) {
          unlock_all_synced();
          return i;
        }
      } else {
        if (c->closed) {
          unlock_all_synced();
          throw ChanClosed("send on closed channel");
        }
        if (c->cap > 0) {
          if (!send_locked(c, sc.elem)) continue;
          unlock_all_synced();
          return i;
        }
        if (Sudog* r = c->recvq.dequeue()) {
          c->ops->move(r->elem, sc.elem);
          mark_done(r, true);
          G* g = r->g;
          unlock_all_synced();
          ready(g);
          return i;
        }
      }
    }
  }
  // 3. Nothing ready.
  if (deadline_case >= 0 && cases[deadline_case].deadline <= nanotime()) {
    unlock_all_synced();
    return deadline_case;
  }
  if (!block) {
    unlock_all_synced();
    return -1;
  }
  // 4. Queue on every channel and park.
  SelectState st;
  st.timed = deadline_case >= 0;
  st.ncases = npoll;
  G* self = self_of(enter);
  Sudog sgbuf[16];
  Sudog* sgs = npoll <= 16 ? sgbuf : new Sudog[static_cast<std::size_t>(npoll)];
  struct SgCleanup {
    Sudog* s;
    Sudog* b;
    ~SgCleanup() {
      if (s != b) delete[] s;
    }
  } sgcleanup{sgs, sgbuf};
  for (int k = 0; k < npoll; k++) {
    int i = pollorder[k];
    Sudog* s = &sgs[k];
    s->g = self;
    s->elem = cases[i].elem;
    s->sel = &st;
    s->case_index = i;
    s->frame_top = GORO_FRAME_TOP();
    if (cases[i].kind == CaseKind::kRecv) {
      cases[i].c->recvq.enqueue(s);
    } else {
      cases[i].c->sendq.enqueue(s);
    }
  }
  SelectTimeout to{&st, self, deadline_case};
  Timer timer;
  timer.when = deadline_case >= 0 ? cases[deadline_case].deadline : 0;
  timer.f = select_timer_fired;
  timer.arg = &to;
  SelectPark sp{locks, nlocks, deadline_case >= 0 ? &timer : nullptr};
  if (npoll == 0 && deadline_case < 0) {
    unlock_all(locks, nlocks);
    block_forever(WaitReason::kSelectNoCases);
  }
  park_self(self, select_unlock, &sp, WaitReason::kSelect);

  // 6. Woken by exactly one case (or the timer).
  if (deadline_case >= 0) timer_stop(&timer);
  for (int i = 0; i < nlocks; i++) locks[i]->lock.lock();
  for (int k = 0; k < npoll; k++) {
    Sudog* s = &sgs[k];
    ChanCore* c = cases[s->case_index].c;
    if (cases[s->case_index].kind == CaseKind::kRecv) {
      c->recvq.remove(s);
    } else {
      c->sendq.remove(s);
    }
  }
  unlock_all_synced();
  int fired = st.fired;
  if (fired < 0) fatal("select: woken without a case");
  if (cases[fired].kind == CaseKind::kRecv) {
    cases[fired].ok = st.fired_success;
  } else if (cases[fired].kind == CaseKind::kSend && !st.fired_success) {
    throw ChanClosed("send on closed channel");
  }
  return fired;
}

}  // namespace goro::internal
