/* nt_log: JSON-lines logger on stdout. */
#include "nt_log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int g_min_level = NT_LOG_INFO;
static char g_node[160];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void nt_log_init(int min_level, const char *node_id) {
  g_min_level = min_level;
  g_node[0] = '\0';
  if (node_id) snprintf(g_node, sizeof g_node, "%s", node_id);
}

int nt_log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (s && strcmp(s, level_names[i]) == 0) return i;
  return -1;
}

int nt_log_enabled(int level) { return level >= g_min_level && level >= 0 && level <= NT_LOG_ERROR; }

void nt_log(int level, const char *msg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  nt_vlog(level, msg, fmt, ap);
  va_end(ap);
}

void nt_vlog(int level, const char *msg, const char *fmt, va_list ap) {
  if (!nt_log_enabled(level)) return;

  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char ts[40];
  size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof ts - n, ".%03dZ", (int)(tv.tv_usec / 1000));

  json_t *obj = NULL;
  if (fmt) {
    json_error_t jerr;
    obj = json_vpack_ex(&jerr, 0, fmt, ap);
  }
  if (!obj || !json_is_object(obj)) {
    json_decref(obj);
    obj = json_object();
  }
  json_t *line = json_object();
  json_object_set_new(line, "ts", json_string(ts));
  json_object_set_new(line, "level", json_string(level_names[level]));
  if (g_node[0]) json_object_set_new(line, "node", json_string(g_node));
  json_object_set_new(line, "msg", json_string(msg ? msg : ""));
  json_object_update(line, obj);
  json_decref(obj);

  /* 10 significant digits: 0.482 ms reads "0.482", not its binary expansion */
  char *s = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
  json_decref(line);
  if (!s) return;
  size_t len = strlen(s);
  s[len] = '\n'; /* overwrite the NUL: json_dumps allocates len+1 */
  ssize_t off = 0;
  while ((size_t)off < len + 1) {
    ssize_t w = write(STDOUT_FILENO, s + off, len + 1 - (size_t)off);
    if (w <= 0) break;
    off += w;
  }
  free(s);
}
