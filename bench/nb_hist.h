/* nb_hist: a log-linear histogram of non-negative integer values (HdrHistogram-like).
 *
 * Values below 128 have their own bucket; above, every power of two is split into 64
 * linear sub-buckets, so any recorded value is reported within 1/64 (1.6 %) of itself.
 * Fixed size (no allocation), O(1) record (one clz), mergeable by adding counts. The
 * benchmark records nanoseconds: the range covers 0 .. 2^64. */
#ifndef NB_HIST_H
#define NB_HIST_H

#include <stddef.h>
#include <stdint.h>

#define NB_HIST_SUB 64
#define NB_HIST_BUCKETS (2 * NB_HIST_SUB + (64 - 7) * NB_HIST_SUB)

typedef struct nb_hist {
  uint64_t total;
  uint64_t min, max;
  double sum;
  uint64_t counts[NB_HIST_BUCKETS];
} nb_hist;

void nb_hist_init(nb_hist *h);

static inline unsigned nb_hist_index(uint64_t v) {
  if (v < 2 * NB_HIST_SUB) return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 7 */
  unsigned shift = e - 6;
  return 2 * NB_HIST_SUB + (e - 7) * NB_HIST_SUB + (unsigned)((v >> shift) - NB_HIST_SUB);
}

static inline void nb_hist_record(nb_hist *h, uint64_t v) {
  h->counts[nb_hist_index(v)]++;
  h->total++;
  h->sum += (double)v;
  if (v > h->max) h->max = v;
  if (v < h->min) h->min = v;
}

/* Lowest value that falls in bucket i, and the width of that bucket. */
uint64_t nb_hist_bucket_low(unsigned i);
uint64_t nb_hist_bucket_width(unsigned i);

/* Value at quantile q (0..1): the middle of the bucket that holds it, clamped to
 * [min, max]. 0 when empty. */
uint64_t nb_hist_quantile(const nb_hist *h, double q);
double nb_hist_mean(const nb_hist *h);

/* dst += src */
void nb_hist_merge(nb_hist *dst, const nb_hist *src);

#endif
