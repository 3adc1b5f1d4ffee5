/* nb_hist: log-linear histogram. */
#include "nb_hist.h"

#include <math.h>
#include <string.h>

void nb_hist_init(nb_hist *h) {
  memset(h, 0, sizeof *h);
  h->min = UINT64_MAX;
}

uint64_t nb_hist_bucket_low(unsigned i) {
  if (i < 2 * NB_HIST_SUB) return i;
  unsigned k = i - 2 * NB_HIST_SUB;
  unsigned e = 7 + k / NB_HIST_SUB;
  uint64_t sub = NB_HIST_SUB + k % NB_HIST_SUB;
  return sub << (e - 6);
}

uint64_t nb_hist_bucket_width(unsigned i) {
  if (i < 2 * NB_HIST_SUB) return 1;
  unsigned e = 7 + (i - 2 * NB_HIST_SUB) / NB_HIST_SUB;
  return (uint64_t)1 << (e - 6);
}

uint64_t nb_hist_quantile(const nb_hist *h, double q) {
  if (!h->total) return 0;
  if (q <= 0) return h->min;
  if (q >= 1) return h->max;
  uint64_t rank = (uint64_t)ceil(q * (double)h->total);
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < NB_HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      uint64_t v = nb_hist_bucket_low(i) + nb_hist_bucket_width(i) / 2;
      if (v > h->max) v = h->max;
      if (v < h->min) v = h->min;
      return v;
    }
  }
  return h->max;
}

double nb_hist_mean(const nb_hist *h) { return h->total ? h->sum / (double)h->total : 0; }

void nb_hist_merge(nb_hist *dst, const nb_hist *src) {
  if (!src->total) return;
  for (unsigned i = 0; i < NB_HIST_BUCKETS; i++) dst->counts[i] += src->counts[i];
  dst->total += src->total;
  dst->sum += src->sum;
  if (src->max > dst->max) dst->max = src->max;
  if (src->min < dst->min) dst->min = src->min;
}
