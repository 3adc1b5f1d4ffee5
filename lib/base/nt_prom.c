/* nt_prom: Prometheus text format writer. */
#include "nt_prom.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void vput(nt_prom *w, const char *fmt, va_list ap0) {
  if (w->oom) return;
  for (;;) {
    va_list ap;
    va_copy(ap, ap0);
    int n = vsnprintf(w->p ? w->p + w->len : NULL, w->p ? w->cap - w->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      w->oom = 1;
      return;
    }
    if (w->p && (size_t)n < w->cap - w->len) {
      w->len += (size_t)n;
      return;
    }
    size_t ncap = (w->cap + (size_t)n + 1) * 2;
    if (ncap < 4096) ncap = 4096;
    char *np = realloc(w->p, ncap);
    if (!np) {
      w->oom = 1;
      return;
    }
    if (!w->p) np[0] = '\0';
    w->p = np;
    w->cap = ncap;
  }
}

void nt_prom_printf(nt_prom *w, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vput(w, fmt, ap);
  va_end(ap);
}

void nt_prom_head(nt_prom *w, const char *name, const char *type, const char *help) {
  nt_prom_printf(w, "# HELP natter_%s %s\n# TYPE natter_%s %s\n", name, help, name, type);
}

void nt_prom_sample(nt_prom *w, const char *name, const char *labels, uint64_t v) {
  nt_prom_printf(w, "natter_%s%s %llu\n", name, labels ? labels : "", (unsigned long long)v);
}

void nt_prom_metric(nt_prom *w, const char *name, const char *type, const char *help,
                    uint64_t v) {
  nt_prom_head(w, name, type, help);
  nt_prom_sample(w, name, NULL, v);
}

char *nt_prom_take(nt_prom *w) {
  char *out = w->oom ? NULL : w->p ? w->p : strdup("");
  if (w->oom) free(w->p);
  *w = (nt_prom)NT_PROM_INIT;
  return out;
}
