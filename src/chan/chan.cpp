// chan.cpp - channels and select (Go's chan.go and select.go).
//
// What it owns: the channel (ChanCore), its wait queues, and select over several of them. The
// typed handle goro::Chan<T> (include/goro/chan.hpp) only moves values in and out.
//
// A channel is a lock, an optional ring buffer of `cap` elements, a closed flag and two wait
// queues of Sudogs (a waiting goroutine or thread plus where its value is: the value to send,
// or the storage to receive into). Invariants, under the lock:
//   * at least one of sendq and recvq is empty;
//   * recvq non-empty implies the buffer is empty; sendq non-empty implies it is full
//     (unbuffered channels: always both);
//   * a closed channel has an empty sendq and recvq.
//
// Send (receive is symmetric):
//  1. Lock. Closed: unlock, throw ChanClosed.
//  2. A receiver is waiting: move the value straight into its storage, mark it successful,
//     unlock, ready it (the direct hand-off: no buffer, the receiver's copy is done).
//  3. Buffer room: move the value into the ring, unlock.
//  4. Else queue a Sudog on sendq and park; the lock is released by park after the goroutine
//     is switched out. Woken with success: the receiver took the value. Woken without: the
//     channel was closed: throw ChanClosed.
// A receiver that finds a waiting sender on a full buffered channel takes the head of the ring
// and moves the sender's value into the freed tail slot, so per-sender FIFO order holds.
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
// park/ready. Lock order: tracked_lock ▸ channel locks (by address) ▸ a timer heap's lock
// (select arms its timer before unlocking) ▸ sched.lock (ready); reg_lock is a leaf. Timer
// callbacks run with no timer lock held.
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
  std::size_t elemsize;  // size rounded up to its alignment
  std::size_t count = 0;
  std::size_t sendx = 0, recvx = 0;
  bool closed = false;
  WaitQ recvq, sendq;
  unsigned char* buf = nullptr;

  void* slot(std::size_t i) { return buf + i * elemsize; }
};

namespace {

// Finishes a Sudog's operation on the waker's side (channel locked) for a completed select
// case; for plain waiters the fields are read by the waiter itself.
void mark_done(Sudog* s, bool success) {
  s->success = success;
  if (s->sel != nullptr) s->sel->fired_success = success;
}

bool unlock_chan(G*, void* arg) {
  static_cast<ChanCore*>(arg)->lock.unlock();
  return true;
}

[[noreturn]] void block_forever(WaitReason reason) {
  park(nullptr, nullptr, reason);
  fatal("chan: a goroutine blocked forever was woken");
}

// Under c->lock, a waiting sender s present: receive into dst.
void recv_from_sender(ChanCore* c, Sudog* s, void* dst) {
  if (c->cap == 0) {
    if (dst != nullptr) c->ops->move(dst, s->elem);
  } else {
    // Full buffer: take the head, put the sender's value at the tail (same slot).
    void* head = c->slot(c->recvx);
    if (dst != nullptr) c->ops->move(dst, head);
    c->ops->destroy(head);
    c->ops->move(head, s->elem);
    if (++c->recvx == c->cap) c->recvx = 0;
    c->sendx = c->recvx;
  }
  mark_done(s, true);
}

// Under c->lock, count > 0: take the head of the buffer into dst.
void recv_from_buffer(ChanCore* c, void* dst) {
  void* head = c->slot(c->recvx);
  c->ops->move(dst, head);
  c->ops->destroy(head);
  if (++c->recvx == c->cap) c->recvx = 0;
  c->count--;
}

void send_to_buffer(ChanCore* c, void* src) {
  c->ops->move(c->slot(c->sendx), src);
  if (++c->sendx == c->cap) c->sendx = 0;
  c->count++;
}

}  // namespace

ChanCore* chan_make(std::size_t cap, const ElemOps* ops) {
  EnterRuntime enter;
  std::size_t align = ops->align < alignof(ChanCore) ? alignof(ChanCore) : ops->align;
  std::size_t elemsize = (ops->size + ops->align - 1) / ops->align * ops->align;
  std::size_t header = (sizeof(ChanCore) + align - 1) / align * align;
  if (cap > (SIZE_MAX - header) / (elemsize == 0 ? 1 : elemsize)) throw std::bad_alloc();
  void* mem = ::operator new (header + cap * elemsize, std::align_val_t{align});
  auto* c = ::new (mem) ChanCore;
  c->ops = ops;
  c->cap = cap;
  c->elemsize = elemsize;
  c->buf = static_cast<unsigned char*>(mem) + header;
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
  for (std::size_t i = 0, x = c->recvx; i < c->count; i++) {
    c->ops->destroy(c->slot(x));
    if (++x == c->cap) x = 0;
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

bool chan_send(ChanCore* c, void* src, bool block) {
  EnterRuntime enter;
  if (c == nullptr) {
    if (!block) return false;
    block_forever(WaitReason::kChanSendNil);
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
  if (c->count < c->cap) {
    send_to_buffer(c, src);
    c->lock.unlock();
    return true;
  }
  if (!block) {
    c->lock.unlock();
    return false;
  }
  Sudog me;
  me.g = waiter();
  me.elem = src;
  me.frame_top = GORO_FRAME_TOP();
  c->sendq.enqueue(&me);
  park(unlock_chan, c, WaitReason::kChanSend);
  if (!me.success) throw ChanClosed("send on closed channel");
  return true;
}

RecvResult chan_recv(ChanCore* c, void* dst, bool block) {
  EnterRuntime enter;
  if (c == nullptr) {
    if (!block) return RecvResult::kWouldBlock;
    block_forever(WaitReason::kChanReceiveNil);
  }
  c->lock.lock();
  if (Sudog* s = c->sendq.dequeue()) {
    recv_from_sender(c, s, dst);
    G* g = s->g;
    c->lock.unlock();
    ready(g);
    return RecvResult::kValue;
  }
  if (c->count > 0) {
    recv_from_buffer(c, dst);
    c->lock.unlock();
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
  Sudog me;
  me.g = waiter();
  me.elem = dst;
  me.frame_top = GORO_FRAME_TOP();
  c->recvq.enqueue(&me);
  park(unlock_chan, c, WaitReason::kChanReceive);
  return me.success ? RecvResult::kValue : RecvResult::kClosed;
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
  // Collect every waiter (receivers get "closed", senders will throw), ready them unlocked.
  Sudog* wake = nullptr;
  for (WaitQ* q : {&c->recvq, &c->sendq}) {
    while (Sudog* s = q->dequeue()) {
      mark_done(s, false);
      s->next = wake;
      wake = s;
    }
  }
  c->lock.unlock();
  while (wake != nullptr) {
    Sudog* s = wake;
    wake = s->next;  // read before ready: s lives on the waiter's stack
    ready(s->g);
  }
}

std::size_t chan_len(const ChanCore* c) noexcept {
  if (c == nullptr) return 0;
  auto* cc = const_cast<ChanCore*>(c);
  LockGuard hold(cc->lock);
  return cc->count;
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
  std::sort(locks, locks + nlocks);
  nlocks = static_cast<int>(std::unique(locks, locks + nlocks) - locks);

  for (int i = 0; i < nlocks; i++) locks[i]->lock.lock();

  // 2. The first case in poll order that can proceed.
  for (int k = 0; k < npoll; k++) {
    int i = pollorder[k];
    SelectCase& sc = cases[i];
    ChanCore* c = sc.c;
    if (sc.kind == CaseKind::kRecv) {
      if (Sudog* s = c->sendq.dequeue()) {
        recv_from_sender(c, s, sc.elem);
        sc.ok = true;
        G* g = s->g;
        unlock_all(locks, nlocks);
        ready(g);
        return i;
      }
      if (c->count > 0) {
        recv_from_buffer(c, sc.elem);
        sc.ok = true;
        unlock_all(locks, nlocks);
        return i;
      }
      if (c->closed) {
        unlock_all(locks, nlocks);
        return i;
      }
    } else {
      if (c->closed) {
        unlock_all(locks, nlocks);
        throw ChanClosed("send on closed channel");
      }
      if (Sudog* r = c->recvq.dequeue()) {
        c->ops->move(r->elem, sc.elem);
        mark_done(r, true);
        G* g = r->g;
        unlock_all(locks, nlocks);
        ready(g);
        return i;
      }
      if (c->count < c->cap) {
        send_to_buffer(c, sc.elem);
        unlock_all(locks, nlocks);
        return i;
      }
    }
  }
  // 3. Nothing ready.
  if (deadline_case >= 0 && cases[deadline_case].deadline <= nanotime()) {
    unlock_all(locks, nlocks);
    return deadline_case;
  }
  if (!block) {
    unlock_all(locks, nlocks);
    return -1;
  }
  // 4. Queue on every channel and park.
  SelectState st;
  st.timed = deadline_case >= 0;
  st.ncases = npoll;
  G* self = waiter();
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
  park(select_unlock, &sp, WaitReason::kSelect);

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
  unlock_all(locks, nlocks);
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
