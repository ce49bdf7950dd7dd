/* The durable writes a STRICT commit could use, on the file system holding DIR, measured in
 * turn (which goes first rotates) so that the disk's drifting latency falls on all alike:
 * pwrite of 4 KiB + fdatasync (issue 17 item 5's peer), 128 B + fdatasync, pwritev2 with
 * RWF_DSYNC, O_DIRECT + fdatasync, O_DIRECT|O_DSYNC of 4 KiB and of 512 B. Prints the median
 * and quartiles in microseconds. docs/LOG.md ("One system call for the write and its sync")
 * quotes it. Not built by the tests:
 *
 *   gcc -O2 -o /tmp/sync_probe scripts/sync_probe.c && /tmp/sync_probe DIR [trials]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { KINDS = 6 };
static const char* NAMES[KINDS] = {"pwrite 4 KiB + fdatasync", "pwrite 128 B + fdatasync", "pwritev2 RWF_DSYNC 4 KiB",
                                   "O_DIRECT 4 KiB + fdatasync", "O_DIRECT|O_DSYNC 4 KiB", "O_DIRECT|O_DSYNC 512 B"};

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIR [trials]\n", argv[0]);
    return 2;
  }
  int trials = argc > 2 ? atoi(argv[2]) : 800;
  if (trials < 4) trials = 4;
  char path[4096];
  snprintf(path, sizeof path, "%s/sync_probe.tmp", argv[1]);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  char* buf = NULL;
  if (fd < 0 || posix_memalign((void**)&buf, 4096, 1 << 20) != 0) {
    perror("sync_probe");
    return 1;
  }
  memset(buf, 1, 1 << 20);
  if (pwrite(fd, buf, 1 << 20, 0) != 1 << 20 || fsync(fd) != 0) {
    perror("sync_probe: prefill");
    return 1;
  }
  int direct = open(path, O_RDWR | O_DIRECT), direct_sync = open(path, O_RDWR | O_DIRECT | O_DSYNC);
  double* t = calloc((size_t)KINDS * trials, sizeof(double));
  for (int i = 0; i < trials; i++) {
    for (int k = 0; k < KINDS; k++) {
      int kind = (k + i) % KINDS;
      off_t at = (off_t)(i % 64) * 4096;
      struct iovec v = {buf, 4096};
      double start = now_us();
      int ok = 1;
      switch (kind) {
        case 0: ok = pwrite(fd, buf, 4096, at) == 4096 && fdatasync(fd) == 0; break;
        case 1: ok = pwrite(fd, buf, 128, at + 100) == 128 && fdatasync(fd) == 0; break;
        case 2: ok = pwritev2(fd, &v, 1, at, RWF_DSYNC) == 4096; break;
        case 3: ok = direct >= 0 && pwrite(direct, buf, 4096, at) == 4096 && fdatasync(direct) == 0; break;
        case 4: ok = direct_sync >= 0 && pwrite(direct_sync, buf, 4096, at) == 4096; break;
        case 5: ok = direct_sync >= 0 && pwrite(direct_sync, buf, 512, at) == 512; break;
      }
      t[kind * trials + i] = ok ? now_us() - start : -1;
    }
  }
  for (int k = 0; k < KINDS; k++) {
    double* row = t + (size_t)k * trials;
    if (row[0] < 0) {
      printf("%-28s not supported here\n", NAMES[k]);
      continue;
    }
    qsort(row, trials, sizeof(double), by_value);
    printf("%-28s median %7.1f us   quartiles %7.1f %7.1f\n", NAMES[k], row[trials / 2], row[trials / 4],
           row[3 * trials / 4]);
  }
  unlink(path);
  return 0;
}
