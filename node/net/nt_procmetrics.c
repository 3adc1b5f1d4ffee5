/* nt_procmetrics: process_* metrics from /proc/self, and natter_build_info. */
#include "nt_procmetrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int nt_procstats_parse(const char *stat, long clk_tck, long page_size, uint64_t boot_time_s,
                       nt_procstats *out) {
  /* "pid (comm) state ..." where comm may hold spaces and ')': fields count from the
   * last ')'. After it: field 3 (state) ... 14 utime, 15 stime, 22 starttime, 23 vsize,
   * 24 rss (pages), as proc(5) numbers them. */
  const char *p = stat ? strrchr(stat, ')') : NULL;
  if (!p || clk_tck <= 0 || page_size <= 0) return -1;
  p++;
  unsigned long long f[25] = {0};
  int field = 2;
  while (*p && field < 24) {
    while (*p == ' ') p++;
    if (!*p) break;
    field++;
    if (field == 3) { /* the state: one letter */
      if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')) || (p[1] && p[1] != ' '))
        return -1;
      p++;
      continue;
    }
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p) return -1;
    f[field] = v;
    p = end;
  }
  if (field < 24) return -1;
  out->cpu_seconds = (double)(f[14] + f[15]) / (double)clk_tck;
  out->start_time_s = (double)boot_time_s + (double)f[22] / (double)clk_tck;
  out->virtual_bytes = f[23];
  out->resident_bytes = f[24] * (uint64_t)page_size;
  return 0;
}

static char *slurp(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n <= 0) return NULL;
  buf[n] = '\0';
  return buf;
}

static uint64_t boot_time(void) {
  char buf[8192];
  const char *s = slurp("/proc/stat", buf, sizeof buf);
  const char *b = s ? strstr(s, "\nbtime ") : NULL;
  return b ? strtoull(b + 7, NULL, 10) : 0;
}

static uint64_t count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return 0;
  uint64_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n ? n - 1 : 0; /* the directory's own descriptor */
}

int nt_procstats_read(nt_procstats *out) {
  memset(out, 0, sizeof *out);
  char buf[1024];
  const char *s = slurp("/proc/self/stat", buf, sizeof buf);
  if (!s || nt_procstats_parse(s, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), boot_time(),
                               out))
    return -1;
  out->open_fds = count_fds();
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) out->max_fds = (uint64_t)rl.rlim_cur;
  return 0;
}

#define FAMILY(name, type, help) "# HELP " name " " help "\n# TYPE " name " " type "\n" name

void nt_procmetrics_render(nt_prom *w, const char *version, const char *commit) {
  nt_procstats ps;
  if (nt_procstats_read(&ps) == 0) {
    /* the client_golang / client_python names, types and help texts (not natter_: the
     * standard families are spelled here, as nt_prom prefixes its own) */
    const struct { const char *head; double v; } rows[] = {
        {FAMILY("process_cpu_seconds_total", "counter",
                "Total user and system CPU time spent in seconds."), ps.cpu_seconds},
        {FAMILY("process_resident_memory_bytes", "gauge", "Resident memory size in bytes."),
         (double)ps.resident_bytes},
        {FAMILY("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes."),
         (double)ps.virtual_bytes},
        {FAMILY("process_start_time_seconds", "gauge",
                "Start time of the process since unix epoch in seconds."), ps.start_time_s},
        {FAMILY("process_open_fds", "gauge", "Number of open file descriptors."),
         (double)ps.open_fds},
        {FAMILY("process_max_fds", "gauge", "Maximum number of open file descriptors."),
         (double)ps.max_fds},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
      nt_prom_printf(w, "%s %.15g\n", rows[i].head, rows[i].v); /* integers exact to 2^49 */
  }
  /* version and commit are build constants without quotes or backslashes */
  nt_prom_printf(w,
      FAMILY("natter_build_info", "gauge",
             "Always 1; the labels name the build (version, git commit).") "{version=\"%s\",commit=\"%s\"} 1\n",
      version, commit);
}
