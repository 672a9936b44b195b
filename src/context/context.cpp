// context.cpp - goro::Context: cancellation trees (Go's package context).
//
// Each derived context is a ContextState: its done channel, a std::stop_source, the reason it
// ended, an optional deadline timer, its parent and its live children. The background context
// has no state at all (a null pointer): it never ends.
//
// Cancel (reason r), in order:
//  1. Under the state's lock: if it already ended, stop; else record r, take the children
//     list, unlock.
//  2. Close done (wakes every waiter; select cases fire) and request stop on the stop_source.
//  3. Cancel every child with r (the same reason as Go reports: a parent's deadline makes its
//     children end with kDeadlineExceeded too).
//  4. Stop the deadline timer (it may be the caller: timer callbacks do not wait for
//     themselves) and unlink from the parent's children.
// Children hold their parent with a shared_ptr; parents hold children by raw pointer, unlinked
// by the child's destructor, so a tree of dropped contexts frees itself.
//
// The deadline timer runs cancel on the timer thread; cancel never blocks for long (the state
// lock is held only around plain field updates), as timer callbacks must not.
//
// Lock order: a child's lock is never held while taking its parent's, and vice versa (each
// step above releases one before taking another).
#include <algorithm>
#include <functional>
#include <vector>

#include "base/lock.hpp"
#include "base/platform.hpp"
#include "goro/context.hpp"
#include "sched/proc.hpp"
#include "time/timer.hpp"

namespace goro {

namespace internal {

struct ContextState {
  Lock lock;
  Chan<std::monostate> done{0};
  std::stop_source stop;
  std::atomic<ContextErr> err{ContextErr::kNone};
  std::shared_ptr<ContextState> parent;
  std::vector<ContextState*> children;  // under lock
  std::optional<std::chrono::steady_clock::time_point> deadline;
  Timer timer;  // armed when deadline is set
  bool timer_armed = false;
  std::optional<std::stop_callback<std::function<void()>>> token_cb;

  ~ContextState();
  void cancel(ContextErr why) noexcept;
  void add_child(ContextState* c);
  void remove_child(ContextState* c);
};

void ContextState::add_child(ContextState* c) {
  EnterRuntime enter;
  ContextErr perr;
  {
    LockGuard hold(lock);
    perr = err.load(std::memory_order_acquire);
    if (perr == ContextErr::kNone) {
      children.push_back(c);
      return;
    }
  }
  c->cancel(perr);  // the parent already ended: so does the child, with the same reason
}

void ContextState::remove_child(ContextState* c) {
  EnterRuntime enter;
  LockGuard hold(lock);
  auto it = std::find(children.begin(), children.end(), c);
  if (it != children.end()) children.erase(it);
}

void ContextState::cancel(ContextErr why) noexcept {
  EnterRuntime enter;
  std::vector<ContextState*> kids;
  {
    LockGuard hold(lock);
    if (err.load(std::memory_order_relaxed) != ContextErr::kNone) return;
    err.store(why, std::memory_order_release);
    kids.swap(children);
  }
  try {
    done.close();
  } catch (const ChanClosed&) {
  }
  stop.request_stop();
  for (ContextState* k : kids) k->cancel(why);
  // If the timer's callback is running (it may be this very call), the one-shot timer is
  // already out of its heap, and timer_stop would wait for the callback: skip it. Otherwise
  // disarm it now rather than when the state is freed.
  if (timer_armed && timer.running.load(std::memory_order_acquire) == 0) timer_stop(&timer);
  if (parent) parent->remove_child(this);
}

ContextState::~ContextState() {
  EnterRuntime enter;
  if (timer_armed) timer_stop(&timer);
  token_cb.reset();
  if (parent) parent->remove_child(this);
}

namespace {

void deadline_fired(void* arg, std::int64_t) {
  static_cast<ContextState*>(arg)->cancel(ContextErr::kDeadlineExceeded);
}

std::shared_ptr<ContextState> derive(const std::shared_ptr<ContextState>& parent) {
  EnterRuntime enter;
  auto s = std::make_shared<ContextState>();
  s->parent = parent;
  if (parent) {
    s->deadline = parent->deadline;
    parent->add_child(s.get());
  }
  return s;
}

}  // namespace

}  // namespace internal

const char* to_string(ContextErr e) noexcept {
  switch (e) {
    case ContextErr::kNone:
      return "";
    case ContextErr::kCanceled:
      return "context canceled";
    case ContextErr::kDeadlineExceeded:
      return "context deadline exceeded";
  }
  return "";
}

namespace {
const Chan<std::monostate> nil_done;
}

const Chan<std::monostate>& Context::done() const noexcept {
  return s_ ? s_->done : nil_done;
}

ContextErr Context::err() const noexcept {
  return s_ ? s_->err.load(std::memory_order_acquire) : ContextErr::kNone;
}

std::optional<std::chrono::steady_clock::time_point> Context::deadline() const noexcept {
  return s_ ? s_->deadline : std::nullopt;
}

std::stop_token Context::stop_token() const noexcept {
  return s_ ? s_->stop.get_token() : std::stop_token{};
}

void CancelFunc::operator()() const noexcept {
  if (s_) s_->cancel(ContextErr::kCanceled);
}

std::pair<Context, CancelFunc> with_cancel(const Context& parent) {
  auto s = internal::derive(parent.s_);
  return {Context(s), CancelFunc(s)};
}

std::pair<Context, CancelFunc> with_deadline(const Context& parent,
                                             std::chrono::steady_clock::time_point deadline) {
  auto s = internal::derive(parent.s_);
  if (!s->deadline || deadline < *s->deadline) {
    s->deadline = deadline;
    if (deadline <= std::chrono::steady_clock::now()) {
      s->cancel(ContextErr::kDeadlineExceeded);
    } else if (s->err.load(std::memory_order_acquire) == ContextErr::kNone) {
      s->timer.when =
          std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
      s->timer.f = internal::deadline_fired;
      s->timer.arg = s.get();
      s->timer_armed = true;
      internal::timer_start(&s->timer);
    }
  }
  return {Context(s), CancelFunc(s)};
}

std::pair<Context, CancelFunc> with_stop_token(const Context& parent, std::stop_token token) {
  auto s = internal::derive(parent.s_);
  internal::ContextState* raw = s.get();
  s->token_cb.emplace(std::move(token),
                      std::function<void()>([raw] { raw->cancel(ContextErr::kCanceled); }));
  return {Context(s), CancelFunc(s)};
}

}  // namespace goro
