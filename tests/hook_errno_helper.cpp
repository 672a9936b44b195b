// hook_errno_helper.cpp - code that caches errno's address across a hooked call, for
// hook_test's errno tests. Built with -O2 (tests/CMakeLists.txt) whatever the build type: glibc
// declares __errno_location() const, so GCC and Clang compute &errno once, before the call, keep
// it in a callee-saved register and read errno through it afterwards (check with
// `objdump -d --no-show-raw-insn hook_errno_helper.cpp.o`: one call to __errno_location, before
// the call to read). If the goroutine resumed on another thread, that address is the old
// thread's errno unless the hook rewrote it (io_hooks.cpp, "errno").
#include <errno.h>
#include <unistd.h>

extern "C" __attribute__((noinline)) int goro_test_errno_after_read(int fd, void* buf,
                                                                    unsigned long n, long* result) {
  errno = 4242;  // computes &errno here
  long r = read(fd, buf, n);
  *result = r;
  return errno;  // ... and reads it through the same address
}

extern "C" __attribute__((noinline)) int goro_test_errno_after_usleep(unsigned us) {
  errno = 4343;
  usleep(us);
  return errno;
}
