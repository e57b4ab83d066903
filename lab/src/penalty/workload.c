/* The emulation-penalty workload in C: the same loop as penalty-workload.ts (xorshift32 into
 * FNV-1a), timed from inside so process start-up is not counted. Prints one JSON line:
 * {"iterations":N,"hash":H,"ms":T}. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s iterations\n", argv[0]);
    return 2;
  }
  long n = strtol(argv[1], NULL, 10);
  double start = now_ms();
  /* volatile-free but opaque: the result is printed, so the loop cannot be removed. */
  uint32_t x = 2463534242u, h = 2166136261u;
  for (long i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    h = (h ^ (x & 0xff)) * 16777619u;
  }
  double ms = now_ms() - start;
  printf("{\"iterations\":%ld,\"hash\":%u,\"ms\":%.3f}\n", n, h, ms);
  return 0;
}
