/* nt_heap: malloc_trim once a burst of work is over (see nt_heap.h). */
#include "nt_heap.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

size_t nt_heap_rss(void) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  unsigned long size, resident;
  if (sscanf(buf, "%lu %lu", &size, &resident) != 2) return 0;
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

int nt_heap_trim_tick(nt_heap_trim *t, uint64_t work, uint64_t quiet, size_t grow) {
  uint64_t recent = work - t->last_work;
  t->last_work = work;
  size_t rss = nt_heap_rss();
  if (!rss) return 0;
  if (!t->base || rss < t->base) t->base = rss;
  if (recent > quiet || rss - t->base < grow) return 0;
  malloc_trim(0);
  t->trims++;
  size_t after = nt_heap_rss();
  t->base = after ? after : rss;
  return 1;
}
