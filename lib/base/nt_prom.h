/* nt_prom: a writer of the Prometheus text exposition format (version 0.0.4) into a
 * growing buffer — the one place metric lines are spelled, shared by the node's counters
 * (nt_metrics), the bus/presence/drain gauges of /metrics (nt_api) and the history metrics
 * (nt_resume). Every name gets the "natter_" prefix. Not thread-safe: one writer per
 * rendering. */
#ifndef NT_PROM_H
#define NT_PROM_H

#include <stddef.h>
#include <stdint.h>

typedef struct nt_prom {
  char *p;   /* NUL-terminated text so far (NULL until the first line) */
  size_t len, cap;
  int oom;   /* an allocation failed: further writes are ignored, nt_prom_take gives NULL */
} nt_prom;

#define NT_PROM_INIT {0}

/* "# HELP natter_<name> <help>" and "# TYPE natter_<name> <type>" lines. */
void nt_prom_head(nt_prom *w, const char *name, const char *type, const char *help);

/* One sample "natter_<name><labels> <v>"; `labels` ("{k=\"v\"}") may be NULL. */
void nt_prom_sample(nt_prom *w, const char *name, const char *labels, uint64_t v);

/* A metric with one unlabelled sample: head and sample. */
void nt_prom_metric(nt_prom *w, const char *name, const char *type, const char *help,
                    uint64_t v);

/* Any other line (histogram buckets, sums), printf-style; the caller spells the name. */
void nt_prom_printf(nt_prom *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The text (malloc'd, the caller frees; "" when nothing was written), or NULL when an
 * allocation failed. The writer is empty again afterwards. */
char *nt_prom_take(nt_prom *w);

#endif
