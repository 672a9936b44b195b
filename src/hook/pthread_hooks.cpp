// pthread_hooks.cpp - counts the pthread mutexes and rwlocks a goroutine holds, so that
// asynchronous preemption never moves a goroutine to another thread while it holds one.
//
// Why: a goroutine preempted inside `std::lock_guard<std::mutex>` would go to the global queue
// with the mutex held; the next goroutine on the same M that locks it blocks the whole M in
// the kernel, and with GOMAXPROCS=1 nothing ever runs the holder again. Without preemption the
// holder keeps its thread until it unlocks (a goroutine that *parks* holding an OS mutex is a
// bug the debug tools report, as in every M:N runtime).
//
// How: the library defines pthread_mutex_lock/trylock/timedlock/clocklock/unlock and the
// rwlock equivalents. The program's calls (std::mutex, std::shared_mutex and C code alike)
// bind to these definitions, which call glibc's exported aliases (__pthread_mutex_lock, ...,
// bound by symbol version at link time, so no dlsym runs during start-up; the timed variants,
// which have no alias, are looked up once with dlvsym on first use)
// and count successes in the calling goroutine's G::oslocks. The count follows the goroutine,
// so an unlock after a park on another thread balances it. On a plain thread (no goroutine)
// the cost is one thread-local load. libc's internal locking uses its own hidden aliases and
// is not counted (and needs not be: code inside libc is never preempted).
//
// Not built under ThreadSanitizer, whose runtime intercepts the same functions.
#include <dlfcn.h>
#include <pthread.h>
#include <time.h>

#include <atomic>

#include "debug/leak.hpp"
#include "sched/proc.hpp"

#if !defined(GORO_ASAN)
// glibc's own entry points under their exported __ aliases. They are compat symbols (version
// GLIBC_2.2.5, not the default), so the references name the version explicitly; a plain
// versioned reference to pthread_mutex_lock itself could bind back to our definition.
extern "C" {
int goro_real_mutex_lock(pthread_mutex_t* m);
int goro_real_mutex_trylock(pthread_mutex_t* m);
int goro_real_mutex_unlock(pthread_mutex_t* m);
int goro_real_rwlock_rdlock(pthread_rwlock_t* l);
int goro_real_rwlock_wrlock(pthread_rwlock_t* l);
int goro_real_rwlock_tryrdlock(pthread_rwlock_t* l);
int goro_real_rwlock_trywrlock(pthread_rwlock_t* l);
int goro_real_rwlock_unlock(pthread_rwlock_t* l);
}
__asm__(".symver goro_real_mutex_lock, __pthread_mutex_lock@GLIBC_2.2.5");
__asm__(".symver goro_real_mutex_trylock, __pthread_mutex_trylock@GLIBC_2.2.5");
__asm__(".symver goro_real_mutex_unlock, __pthread_mutex_unlock@GLIBC_2.2.5");
__asm__(".symver goro_real_rwlock_rdlock, __pthread_rwlock_rdlock@GLIBC_2.2.5");
__asm__(".symver goro_real_rwlock_wrlock, __pthread_rwlock_wrlock@GLIBC_2.2.5");
__asm__(".symver goro_real_rwlock_tryrdlock, __pthread_rwlock_tryrdlock@GLIBC_2.2.5");
__asm__(".symver goro_real_rwlock_trywrlock, __pthread_rwlock_trywrlock@GLIBC_2.2.5");
__asm__(".symver goro_real_rwlock_unlock, __pthread_rwlock_unlock@GLIBC_2.2.5");
#endif

namespace goro::internal {
namespace {

// GORO_DEBUG_OSLOCK (src/debug/deadlock.cpp) also records which lock and where: the return
// address of the hook, the call site in the program (std::mutex::lock is inlined there).
inline int counted(int rc, const void* lock, const void* site, bool rwlock) {
  if (rc == 0) {
    if (G* g = getg()) {
      g->oslocks++;
      if (oslock_check.load(std::memory_order_relaxed) != 0) oslock_acquired(g, lock, site, rwlock);
    }
  }
  return rc;
}

inline void uncount(const void* lock) {
  if (G* g = getg(); g != nullptr && g->oslocks > 0) {
    g->oslocks--;
    if (oslock_check.load(std::memory_order_relaxed) != 0) oslock_released(g, lock);
  }
}

#define GORO_SITE __builtin_return_address(0)

// The real function for the entry points glibc exports no __ alias for. dlvsym does not
// allocate for a versioned lookup in an already loaded object, and these are only reached on
// timed locks, never during start-up of the dynamic loader.
template <class Fn>
Fn real(const char* name, std::atomic<Fn>& cache) {
  Fn f = cache.load(std::memory_order_acquire);
  if (f == nullptr) {
    f = reinterpret_cast<Fn>(dlvsym(RTLD_NEXT, name, "GLIBC_2.34"));
    if (f == nullptr) f = reinterpret_cast<Fn>(dlvsym(RTLD_NEXT, name, "GLIBC_2.2.5"));
    if (f == nullptr) f = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
    cache.store(f, std::memory_order_release);
  }
  return f;
}

using MutexTimed = int (*)(pthread_mutex_t*, const timespec*);
using MutexClock = int (*)(pthread_mutex_t*, clockid_t, const timespec*);
using RwTimed = int (*)(pthread_rwlock_t*, const timespec*);
using RwClock = int (*)(pthread_rwlock_t*, clockid_t, const timespec*);
std::atomic<MutexTimed> real_mutex_timedlock{nullptr};
std::atomic<MutexClock> real_mutex_clocklock{nullptr};
std::atomic<RwTimed> real_rw_timedrdlock{nullptr};
std::atomic<RwTimed> real_rw_timedwrlock{nullptr};
std::atomic<RwClock> real_rw_clockrdlock{nullptr};
std::atomic<RwClock> real_rw_clockwrlock{nullptr};

}  // namespace
}  // namespace goro::internal

#if defined(GORO_ASAN)
// libasan exports unversioned __pthread_mutex_lock (and friends) whose pointers to glibc are
// never set: the versioned references above would bind to them and jump to null. Under ASan go
// through the public names, looked up once (ASan's interceptors of those forward correctly).
namespace goro::internal {
namespace {
using MutexFn = int (*)(pthread_mutex_t*);
using RwFn = int (*)(pthread_rwlock_t*);
std::atomic<MutexFn> asan_mutex_lock{nullptr}, asan_mutex_trylock{nullptr},
    asan_mutex_unlock{nullptr};
std::atomic<RwFn> asan_rw_rdlock{nullptr}, asan_rw_wrlock{nullptr}, asan_rw_tryrdlock{nullptr},
    asan_rw_trywrlock{nullptr}, asan_rw_unlock{nullptr};
}  // namespace
}  // namespace goro::internal
using goro::internal::real;
static int goro_real_mutex_lock(pthread_mutex_t* m) {
  return real("pthread_mutex_lock", goro::internal::asan_mutex_lock)(m);
}
static int goro_real_mutex_trylock(pthread_mutex_t* m) {
  return real("pthread_mutex_trylock", goro::internal::asan_mutex_trylock)(m);
}
static int goro_real_mutex_unlock(pthread_mutex_t* m) {
  return real("pthread_mutex_unlock", goro::internal::asan_mutex_unlock)(m);
}
static int goro_real_rwlock_rdlock(pthread_rwlock_t* l) {
  return real("pthread_rwlock_rdlock", goro::internal::asan_rw_rdlock)(l);
}
static int goro_real_rwlock_wrlock(pthread_rwlock_t* l) {
  return real("pthread_rwlock_wrlock", goro::internal::asan_rw_wrlock)(l);
}
static int goro_real_rwlock_tryrdlock(pthread_rwlock_t* l) {
  return real("pthread_rwlock_tryrdlock", goro::internal::asan_rw_tryrdlock)(l);
}
static int goro_real_rwlock_trywrlock(pthread_rwlock_t* l) {
  return real("pthread_rwlock_trywrlock", goro::internal::asan_rw_trywrlock)(l);
}
static int goro_real_rwlock_unlock(pthread_rwlock_t* l) {
  return real("pthread_rwlock_unlock", goro::internal::asan_rw_unlock)(l);
}
#endif

using namespace goro::internal;

extern "C" {

// Referenced from sysmon.cpp so that a static link always pulls this object in.
__attribute__((visibility("hidden"))) extern const int goro_pthread_hooks_anchor = 1;

__attribute__((visibility("default"))) int pthread_mutex_lock(pthread_mutex_t* m) {
  return counted(goro_real_mutex_lock(m), m, GORO_SITE, false);
}
__attribute__((visibility("default"))) int pthread_mutex_trylock(pthread_mutex_t* m) {
  return counted(goro_real_mutex_trylock(m), m, GORO_SITE, false);
}
__attribute__((visibility("default"))) int pthread_mutex_timedlock(pthread_mutex_t* m,
                                                                   const timespec* t) {
  return counted(real("pthread_mutex_timedlock", real_mutex_timedlock)(m, t), m, GORO_SITE, false);
}
__attribute__((visibility("default"))) int pthread_mutex_clocklock(pthread_mutex_t* m, clockid_t c,
                                                                   const timespec* t) {
  return counted(real("pthread_mutex_clocklock", real_mutex_clocklock)(m, c, t), m, GORO_SITE,
                 false);
}
__attribute__((visibility("default"))) int pthread_mutex_unlock(pthread_mutex_t* m) {
  int rc = goro_real_mutex_unlock(m);
  if (rc == 0) uncount(m);
  return rc;
}

__attribute__((visibility("default"))) int pthread_rwlock_rdlock(pthread_rwlock_t* l) {
  return counted(goro_real_rwlock_rdlock(l), l, GORO_SITE, true);
}
__attribute__((visibility("default"))) int pthread_rwlock_wrlock(pthread_rwlock_t* l) {
  return counted(goro_real_rwlock_wrlock(l), l, GORO_SITE, true);
}
__attribute__((visibility("default"))) int pthread_rwlock_tryrdlock(pthread_rwlock_t* l) {
  return counted(goro_real_rwlock_tryrdlock(l), l, GORO_SITE, true);
}
__attribute__((visibility("default"))) int pthread_rwlock_trywrlock(pthread_rwlock_t* l) {
  return counted(goro_real_rwlock_trywrlock(l), l, GORO_SITE, true);
}
__attribute__((visibility("default"))) int pthread_rwlock_timedrdlock(pthread_rwlock_t* l,
                                                                      const timespec* t) {
  return counted(real("pthread_rwlock_timedrdlock", real_rw_timedrdlock)(l, t), l, GORO_SITE, true);
}
__attribute__((visibility("default"))) int pthread_rwlock_timedwrlock(pthread_rwlock_t* l,
                                                                      const timespec* t) {
  return counted(real("pthread_rwlock_timedwrlock", real_rw_timedwrlock)(l, t), l, GORO_SITE, true);
}
__attribute__((visibility("default"))) int pthread_rwlock_clockrdlock(pthread_rwlock_t* l,
                                                                      clockid_t c,
                                                                      const timespec* t) {
  return counted(real("pthread_rwlock_clockrdlock", real_rw_clockrdlock)(l, c, t), l, GORO_SITE,
                 true);
}
__attribute__((visibility("default"))) int pthread_rwlock_clockwrlock(pthread_rwlock_t* l,
                                                                      clockid_t c,
                                                                      const timespec* t) {
  return counted(real("pthread_rwlock_clockwrlock", real_rw_clockwrlock)(l, c, t), l, GORO_SITE,
                 true);
}
__attribute__((visibility("default"))) int pthread_rwlock_unlock(pthread_rwlock_t* l) {
  int rc = goro_real_rwlock_unlock(l);
  if (rc == 0) uncount(l);
  return rc;
}

}  // extern "C"
