/* Fault injection for exospec's tests (tests/fault/check_faults.py): an
 * LD_PRELOAD library that makes the file system misbehave for the files whose
 * path contains a given string, and only for them.
 *
 * HDF5 1.10's sec2 driver, which exospec uses, reads and writes with pread and
 * pwrite (H5_HAVE_PREADWRITE) on a descriptor from open(); the input's SHA-256
 * is computed with fopen/fread on another thread. Both are wrapped here: the
 * descriptor-level calls (open, open64, openat, openat64, __open_2,
 * __open64_2, read, pread, pread64, write, pwrite, pwrite64, close, dup2,
 * dup3) and the stdio ones the hash uses (fopen, fopen64, fread, ferror,
 * fclose). glibc's own stdio reads do not go through these symbols, hence the
 * stdio wrappers.
 *
 * Configuration, read once from the environment:
 *   EXOSPEC_FAULT_PATH    substring of the path (as passed to open/fopen) of
 *                         the files the fault applies to; unset: no fault.
 *   EXOSPEC_FAULT_OP      read | write | close
 *   EXOSPEC_FAULT_KIND    eio     reads: every read that covers byte AT of the
 *                                 file fails with EIO (a bad sector);
 *                                 writes: once AT bytes have been written to
 *                                 the files in all, every write fails with EIO;
 *                                 close: close() closes and returns EIO.
 *                         enospc  writes: the disk is full after AT bytes in
 *                                 all (the write that crosses AT is short, the
 *                                 ones after it fail with ENOSPC).
 *                         short   reads or writes transfer at most half of
 *                                 what was asked (at least one byte), as POSIX
 *                                 allows; no error.
 *                         pause   the first read that covers byte AT, or the
 *                                 first write once AT bytes have been written,
 *                                 creates the file EXOSPEC_FAULT_SIGNAL and
 *                                 waits (up to 60 s) until the test removes
 *                                 it, then proceeds normally: the test acts on
 *                                 the file system meanwhile.
 *                         count   no fault, only the report below.
 *   EXOSPEC_FAULT_AT      the byte offset (reads) or byte count (writes).
 *   EXOSPEC_FAULT_API     fd (default) | stdio | all: which kind of access the
 *                         read faults apply to (HDF5's reads are fd, the
 *                         hash's are stdio).
 *   EXOSPEC_FAULT_REPORT  a file that receives "fired <op> <kind> <offset>"
 *                         when the fault first happens, and at exit
 *                         "read <bytes> <calls>" and "write <bytes> <calls>"
 *                         for the matching files.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum { kMaxFd = 65536, kMaxStreams = 16 };
enum Op { kOpNone, kOpRead, kOpWrite, kOpClose };
enum Kind { kKindNone, kKindEio, kKindEnospc, kKindShort, kKindPause, kKindCount };
enum Api { kApiFd = 1, kApiStdio = 2 };

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_ready = 0;
static const char* g_path = NULL;
static enum Op g_op = kOpNone;
static enum Kind g_kind = kKindNone;
static int g_api = kApiFd;
static long long g_at = 0;
static const char* g_signal = NULL;
static const char* g_report = NULL;
static unsigned char g_tracked[kMaxFd];
static FILE* g_streams[kMaxStreams];
static int g_stream_error[kMaxStreams];
static long long g_written = 0, g_write_calls = 0, g_read = 0, g_read_calls = 0;
static int g_fired = 0;

static int (*real_open)(const char*, int, ...);
static int (*real_open64)(const char*, int, ...);
static int (*real_openat)(int, const char*, int, ...);
static int (*real_openat64)(int, const char*, int, ...);
static int (*real___open_2)(const char*, int);
static int (*real___open64_2)(const char*, int);
static ssize_t (*real_read)(int, void*, size_t);
static ssize_t (*real_pread)(int, void*, size_t, off_t);
static ssize_t (*real_pread64)(int, void*, size_t, off_t);
static ssize_t (*real_write)(int, const void*, size_t);
static ssize_t (*real_pwrite)(int, const void*, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void*, size_t, off_t);
static int (*real_close)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static FILE* (*real_fopen)(const char*, const char*);
static FILE* (*real_fopen64)(const char*, const char*);
static size_t (*real_fread)(void*, size_t, size_t, FILE*);
static int (*real_ferror)(FILE*);
static int (*real_fclose)(FILE*);

#define RESOLVE(name) real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name)

static void setup(void) {
  if (__atomic_load_n(&g_ready, __ATOMIC_ACQUIRE)) return;
  pthread_mutex_lock(&g_lock);
  if (!g_ready) {
    RESOLVE(open);
    RESOLVE(open64);
    RESOLVE(openat);
    RESOLVE(openat64);
    RESOLVE(__open_2);
    RESOLVE(__open64_2);
    RESOLVE(read);
    RESOLVE(pread);
    RESOLVE(pread64);
    RESOLVE(write);
    RESOLVE(pwrite);
    RESOLVE(pwrite64);
    RESOLVE(close);
    RESOLVE(dup2);
    RESOLVE(dup3);
    RESOLVE(fopen);
    RESOLVE(fopen64);
    RESOLVE(fread);
    RESOLVE(ferror);
    RESOLVE(fclose);
    g_path = getenv("EXOSPEC_FAULT_PATH");
    if (g_path != NULL && *g_path == '\0') g_path = NULL;
    const char* op = getenv("EXOSPEC_FAULT_OP");
    if (op != NULL) {
      g_op = strcmp(op, "read") == 0 ? kOpRead : strcmp(op, "write") == 0 ? kOpWrite
             : strcmp(op, "close") == 0 ? kOpClose : kOpNone;
    }
    const char* kind = getenv("EXOSPEC_FAULT_KIND");
    if (kind != NULL) {
      g_kind = strcmp(kind, "eio") == 0      ? kKindEio
               : strcmp(kind, "enospc") == 0 ? kKindEnospc
               : strcmp(kind, "short") == 0  ? kKindShort
               : strcmp(kind, "pause") == 0  ? kKindPause
               : strcmp(kind, "count") == 0  ? kKindCount
                                             : kKindNone;
    }
    const char* api = getenv("EXOSPEC_FAULT_API");
    if (api != NULL) {
      g_api = strcmp(api, "stdio") == 0 ? kApiStdio : strcmp(api, "all") == 0 ? kApiFd | kApiStdio : kApiFd;
    }
    const char* at = getenv("EXOSPEC_FAULT_AT");
    if (at != NULL) g_at = strtoll(at, NULL, 10);
    g_signal = getenv("EXOSPEC_FAULT_SIGNAL");
    g_report = getenv("EXOSPEC_FAULT_REPORT");
    __atomic_store_n(&g_ready, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&g_lock);
}

static int matches(const char* path) { return g_path != NULL && path != NULL && strstr(path, g_path) != NULL; }

static int tracked(int fd) { return fd >= 0 && fd < kMaxFd && g_tracked[fd]; }

static void set_tracked(int fd, int on) {
  if (fd >= 0 && fd < kMaxFd) g_tracked[fd] = (unsigned char)on;
}

/* Appends a line to the report file (with the real calls: not tracked). */
static void report(const char* fmt, ...) {
  if (g_report == NULL) return;
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  const int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  const int fd = real_open(g_report, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (n > 0) {
    ssize_t ignored = real_write(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    (void)ignored;
  }
  real_close(fd);
}

static const char* op_name(enum Op op) {
  return op == kOpRead ? "read" : op == kOpWrite ? "write" : op == kOpClose ? "close" : "none";
}
static const char* kind_name(enum Kind kind) {
  static const char* names[] = {"none", "eio", "enospc", "short", "pause", "count"};
  return names[kind];
}

static void fire(long long where) {
  if (g_fired) return;
  g_fired = 1;
  report("fired %s %s %lld\n", op_name(g_op), kind_name(g_kind), where);
}

/* Creates the signal file and waits until the test removes it (called
 * without the lock: the other threads go on meanwhile). */
static void wait_for_test(void) {
  if (g_signal == NULL) return;
  const int fd = real_open(g_signal, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) real_close(fd);
  struct stat st;
  for (int i = 0; i < 6000 && stat(g_signal, &st) == 0; ++i) {
    const struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

__attribute__((destructor)) static void at_exit_report(void) {
  if (!g_ready || g_path == NULL || g_kind != kKindCount) return;
  report("read %lld %lld\nwrite %lld %lld\n", g_read, g_read_calls, g_written, g_write_calls);
}

/* ------------------------------------------------------------------ opening */

static int after_open(const char* path, int fd) {
  if (fd >= 0 && matches(path)) {
    pthread_mutex_lock(&g_lock);
    set_tracked(fd, 1);
    pthread_mutex_unlock(&g_lock);
  }
  return fd;
}

static mode_t mode_arg(int flags, va_list ap) {
  return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char* path, int flags, ...) {
  setup();
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return after_open(path, real_open(path, flags, mode));
}

int open64(const char* path, int flags, ...) {
  setup();
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return after_open(path, real_open64(path, flags, mode));
}

int openat(int dirfd, const char* path, int flags, ...) {
  setup();
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return after_open(path, real_openat(dirfd, path, flags, mode));
}

int openat64(int dirfd, const char* path, int flags, ...) {
  setup();
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return after_open(path, real_openat64(dirfd, path, flags, mode));
}

int __open_2(const char* path, int flags) {
  setup();
  return after_open(path, real___open_2(path, flags));
}

int __open64_2(const char* path, int flags) {
  setup();
  return after_open(path, real___open64_2(path, flags));
}

int close(int fd) {
  setup();
  pthread_mutex_lock(&g_lock);
  const int was = tracked(fd);
  set_tracked(fd, 0);
  pthread_mutex_unlock(&g_lock);
  const int r = real_close(fd);
  if (was && r == 0 && g_op == kOpClose && g_kind == kKindEio) {
    pthread_mutex_lock(&g_lock);
    fire(0);
    pthread_mutex_unlock(&g_lock);
    errno = EIO;
    return -1;
  }
  return r;
}

/* A descriptor replaced by dup2 (exospec points an abandoned output at an
 * in-memory file) is no longer the tracked file. */
int dup2(int oldfd, int newfd) {
  setup();
  const int r = real_dup2(oldfd, newfd);
  if (r >= 0 && oldfd != newfd) {
    pthread_mutex_lock(&g_lock);
    set_tracked(newfd, tracked(oldfd));
    pthread_mutex_unlock(&g_lock);
  }
  return r;
}

int dup3(int oldfd, int newfd, int flags) {
  setup();
  const int r = real_dup3(oldfd, newfd, flags);
  if (r >= 0) {
    pthread_mutex_lock(&g_lock);
    set_tracked(newfd, tracked(oldfd));
    pthread_mutex_unlock(&g_lock);
  }
  return r;
}

/* --------------------------------------------------------- reading, writing */

/* What to do with a read of n bytes at `offset` on a tracked descriptor:
 * returns -1 to fail with errno set, else the number of bytes to ask for. */
static ssize_t plan_read(size_t n, long long offset, int api, int* pause) {
  if (g_op != kOpRead || !(g_api & api)) return (ssize_t)n;
  const int covers = offset <= g_at && g_at < offset + (long long)n;
  switch (g_kind) {
    case kKindEio:
      if (covers) {
        fire(offset);
        errno = EIO;
        return -1;
      }
      return (ssize_t)n;
    case kKindShort:
      if (n > 1) {
        fire(offset);
        return (ssize_t)(n / 2);
      }
      return (ssize_t)n;
    case kKindPause:
      if (covers && !g_fired) {
        fire(offset);
        *pause = 1;
      }
      return (ssize_t)n;
    default:
      return (ssize_t)n;
  }
}

static ssize_t plan_write(size_t n, long long offset, int* pause) {
  if (g_op != kOpWrite) return (ssize_t)n;
  switch (g_kind) {
    case kKindEio:
    case kKindEnospc:
      if (g_written + (long long)n > g_at) {
        const long long room = g_at - g_written;
        if (room > 0) return (ssize_t)room;  // a short write up to the limit
        fire(offset);
        errno = g_kind == kKindEio ? EIO : ENOSPC;
        return -1;
      }
      return (ssize_t)n;
    case kKindShort:
      if (n > 1) {
        fire(offset);
        return (ssize_t)(n / 2);
      }
      return (ssize_t)n;
    case kKindPause:
      if (g_written + (long long)n > g_at && !g_fired) {
        fire(offset);
        *pause = 1;
      }
      return (ssize_t)n;
    default:
      return (ssize_t)n;
  }
}

typedef ssize_t (*ReadAt)(int, void*, size_t, off_t);
typedef ssize_t (*WriteAt)(int, const void*, size_t, off_t);

/* The planned size of a read or write of n bytes at offset (negative: fail
 * it), after any pause the plan asks for. */
static ssize_t planned(int is_write, size_t n, long long offset) {
  int pause = 0;
  pthread_mutex_lock(&g_lock);
  const ssize_t ask = is_write ? plan_write(n, offset, &pause) : plan_read(n, offset, kApiFd, &pause);
  pthread_mutex_unlock(&g_lock);
  if (pause) wait_for_test();
  return ask;
}

/* Counts a transfer of r bytes (r <= 0: none) in *bytes and *calls. */
static void counted(long long* bytes, long long* calls, long long r) {
  if (r <= 0) return;
  pthread_mutex_lock(&g_lock);
  *bytes += r;
  ++*calls;
  pthread_mutex_unlock(&g_lock);
}

static ssize_t do_pread(ReadAt real, int fd, void* buf, size_t n, off_t offset) {
  setup();
  if (!tracked(fd)) return real(fd, buf, n, offset);
  const ssize_t ask = planned(0, n, (long long)offset);
  if (ask < 0) return -1;
  const ssize_t r = real(fd, buf, (size_t)ask, offset);
  counted(&g_read, &g_read_calls, r);
  return r;
}

static ssize_t do_pwrite(WriteAt real, int fd, const void* buf, size_t n, off_t offset) {
  setup();
  if (!tracked(fd)) return real(fd, buf, n, offset);
  const ssize_t ask = planned(1, n, (long long)offset);
  if (ask < 0) return -1;
  const ssize_t r = real(fd, buf, (size_t)ask, offset);
  counted(&g_written, &g_write_calls, r);
  return r;
}

ssize_t pread(int fd, void* buf, size_t n, off_t offset) {
  return do_pread(real_pread, fd, buf, n, offset);
}
ssize_t pread64(int fd, void* buf, size_t n, off_t offset) {
  return do_pread(real_pread64, fd, buf, n, offset);
}
ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
  return do_pwrite(real_pwrite, fd, buf, n, offset);
}
ssize_t pwrite64(int fd, const void* buf, size_t n, off_t offset) {
  return do_pwrite(real_pwrite64, fd, buf, n, offset);
}

ssize_t read(int fd, void* buf, size_t n) {
  setup();
  if (!tracked(fd)) return real_read(fd, buf, n);
  const ssize_t ask = planned(0, n, (long long)lseek(fd, 0, SEEK_CUR));
  if (ask < 0) return -1;
  const ssize_t r = real_read(fd, buf, (size_t)ask);
  counted(&g_read, &g_read_calls, r);
  return r;
}

ssize_t write(int fd, const void* buf, size_t n) {
  setup();
  if (!tracked(fd)) return real_write(fd, buf, n);
  const ssize_t ask = planned(1, n, (long long)lseek(fd, 0, SEEK_CUR));
  if (ask < 0) return -1;
  const ssize_t r = real_write(fd, buf, (size_t)ask);
  counted(&g_written, &g_write_calls, r);
  return r;
}

/* ------------------------------------------------------------------- stdio */

static int stream_index(FILE* f) {
  for (int i = 0; i < kMaxStreams; ++i) {
    if (g_streams[i] == f && f != NULL) return i;
  }
  return -1;
}

static FILE* after_fopen(const char* path, FILE* f) {
  if (f != NULL && matches(path)) {
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < kMaxStreams; ++i) {
      if (g_streams[i] == NULL) {
        g_streams[i] = f;
        g_stream_error[i] = 0;
        break;
      }
    }
    pthread_mutex_unlock(&g_lock);
  }
  return f;
}

FILE* fopen(const char* path, const char* mode) {
  setup();
  return after_fopen(path, real_fopen(path, mode));
}

FILE* fopen64(const char* path, const char* mode) {
  setup();
  return after_fopen(path, real_fopen64(path, mode));
}

/* A read error at byte AT: the items before it are read, then the stream's
 * error indicator is set (what fread does on EIO). */
size_t fread(void* buf, size_t size, size_t n, FILE* f) {
  setup();
  pthread_mutex_lock(&g_lock);
  const int i = stream_index(f);
  pthread_mutex_unlock(&g_lock);
  if (i < 0 || size == 0 || g_op != kOpRead || g_kind != kKindEio || !(g_api & kApiStdio)) {
    const size_t r = real_fread(buf, size, n, f);
    if (i >= 0) counted(&g_read, &g_read_calls, (long long)(r * size));
    return r;
  }
  const long long pos = (long long)ftello(f);
  const long long total = (long long)(size * n);
  if (!(pos <= g_at && g_at < pos + total)) return real_fread(buf, size, n, f);
  const size_t before = (size_t)((g_at - pos) / (long long)size);
  const size_t got = before > 0 ? real_fread(buf, size, before, f) : 0;
  pthread_mutex_lock(&g_lock);
  g_stream_error[i] = 1;
  fire(g_at);
  pthread_mutex_unlock(&g_lock);
  errno = EIO;
  return got;
}

int ferror(FILE* f) {
  setup();
  pthread_mutex_lock(&g_lock);
  const int i = stream_index(f);
  const int injected = i >= 0 && g_stream_error[i];
  pthread_mutex_unlock(&g_lock);
  return injected ? 1 : real_ferror(f);
}

int fclose(FILE* f) {
  setup();
  pthread_mutex_lock(&g_lock);
  const int i = stream_index(f);
  if (i >= 0) {
    g_streams[i] = NULL;
    g_stream_error[i] = 0;
  }
  pthread_mutex_unlock(&g_lock);
  return real_fclose(f);
}
