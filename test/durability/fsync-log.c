/*
 * LD_PRELOAD shim for test/audit-fsync.test.ts: logs every write to, and every fsync/fdatasync of, a file whose
 * path starts with $KUBEVISA_FSYNC_WATCH, one line each ("W <path>" / "S <path>"), appended to
 * $KUBEVISA_FSYNC_LOG with O_APPEND. The test's process appends its own acknowledgements to the same file, so
 * the file's line order is the order in which the kernel saw the calls.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static int log_fd = -1;

static void note(char kind, int fd) {
  const char *watch = getenv("KUBEVISA_FSYNC_WATCH");
  const char *log_path = getenv("KUBEVISA_FSYNC_LOG");
  if (!watch || !log_path) return;
  char link[64], path[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return;
  path[n] = 0;
  if (strncmp(path, watch, strlen(watch)) != 0) return;
  if (log_fd < 0) log_fd = (int)syscall(SYS_open, log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  char line[PATH_MAX + 8];
  int len = snprintf(line, sizeof line, "%c %s\n", kind, path);
  syscall(SYS_write, log_fd, line, (size_t)len);
}

int fsync(int fd) {
  int result = (int)syscall(SYS_fsync, fd);
  if (result == 0) note('S', fd);
  return result;
}

int fdatasync(int fd) {
  int result = (int)syscall(SYS_fdatasync, fd);
  if (result == 0) note('S', fd);
  return result;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
  note('W', fd);
  return syscall(SYS_pwrite64, fd, buf, count, offset);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
  note('W', fd);
  return syscall(SYS_pwrite64, fd, buf, count, offset);
}

ssize_t write(int fd, const void *buf, size_t count) {
  note('W', fd);
  return syscall(SYS_write, fd, buf, count);
}
