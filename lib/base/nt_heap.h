/* nt_heap: gives back to the operating system the memory a burst of work freed.
 *
 * glibc keeps freed heap memory for reuse: after a connection storm (thousands of
 * handshakes in flight, each with its parser, WebSocket context, JSON trees, Redis and
 * NATS replies) the resident size stays at the storm's peak although most of it is free.
 * malloc_trim returns those pages, at a cost that grows with the number of free chunks
 * (about 10 ms for 100,000), so it runs only when the resident size grew by a margin since
 * the last trim and the burst is over: never per connection or message, and not at all
 * while the node's memory is steady.
 *
 * Ownership: the caller owns the struct (zeroed). Threading: one thread (the loop). */
#ifndef NT_HEAP_H
#define NT_HEAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct nt_heap_trim {
  uint64_t last_work; /* the work counter at the previous tick */
  size_t base;        /* resident bytes after the last trim (or the lowest seen since) */
  uint64_t trims;     /* trims done */
} nt_heap_trim;

/* The process's resident set in bytes (/proc/self/statm), 0 when unknown. */
size_t nt_heap_rss(void);

/* A periodic tick. `work` is a running count of bursty work (handshakes, joins). Trims
 * when at most `quiet` units were done since the previous tick and the resident size is
 * at least `grow` bytes above what it was after the last trim. Returns 1 when it trimmed. */
int nt_heap_trim_tick(nt_heap_trim *t, uint64_t work, uint64_t quiet, size_t grow);

#endif
