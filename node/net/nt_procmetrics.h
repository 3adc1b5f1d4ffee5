/* nt_procmetrics: the standard Prometheus process_* metrics of this process, read from
 * /proc (Linux), and natter_build_info.
 * Threading: any thread (nothing shared); called by the /metrics handler on the loop. */
#ifndef NT_PROCMETRICS_H
#define NT_PROCMETRICS_H

#include <stddef.h>
#include <stdint.h>

#include "nt_prom.h"

typedef struct nt_procstats {
  double cpu_seconds;        /* user + system CPU time */
  uint64_t resident_bytes;   /* RSS */
  uint64_t virtual_bytes;    /* VSZ */
  double start_time_s;       /* unix time the process started */
  uint64_t open_fds;         /* descriptors open now */
  uint64_t max_fds;          /* RLIMIT_NOFILE soft limit */
} nt_procstats;

/* Parses the text of /proc/<pid>/stat (`stat`, NUL-terminated) into the CPU, memory and
 * start fields of *out, given the clock ticks per second, the page size and the boot
 * time (unix seconds, "btime" of /proc/stat). Returns 0, or -1 when the text is not a
 * stat line (*out unchanged). Pure. */
int nt_procstats_parse(const char *stat, long clk_tck, long page_size, uint64_t boot_time_s,
                       nt_procstats *out);

/* Reads this process's figures from /proc/self and getrlimit. Returns 0, or -1 when /proc
 * cannot be read (*out then holds zeros; the metrics are left out). */
int nt_procstats_read(nt_procstats *out);

/* Writes the process_* families (HELP, TYPE, one sample each; left out when /proc cannot
 * be read) and natter_build_info{version,commit} 1 to `w` (nt_prom.h). */
void nt_procmetrics_render(nt_prom *w, const char *version, const char *commit);

#endif
