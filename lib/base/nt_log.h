/* nt_log: structured logs, one JSON object per line on stdout. */
#ifndef NT_LOG_H
#define NT_LOG_H

#include <stdarg.h>

enum { NT_LOG_DEBUG = 0, NT_LOG_INFO = 1, NT_LOG_WARN = 2, NT_LOG_ERROR = 3 };

/* Sets the minimum level written (default NT_LOG_INFO) and the node id added to every line
 * (copied; NULL for none). Call before starting other threads. */
void nt_log_init(int min_level, const char *node_id);

/* Parses "debug"|"info"|"warn"|"error"; returns the level or -1. */
int nt_log_level_parse(const char *s);

/* Writes {"ts":…,"level":…,"node":…,"msg":msg, <fields>} as one line.
 * `fmt` is a jansson json_pack() format for an object ("{s:s, s:i}") followed by its
 * arguments, or NULL for no extra fields. Thread-safe (one write(2) per line). */
void nt_log(int level, const char *msg, const char *fmt, ...);

/* nt_log with the fields' arguments as a va_list (for wrappers such as rate limiters). */
void nt_vlog(int level, const char *msg, const char *fmt, va_list ap);

/* 1 when a line of `level` would be written (callers skip building costly fields). */
int nt_log_enabled(int level);

#define nt_log_info(msg, ...) nt_log(NT_LOG_INFO, msg, __VA_ARGS__)
#define nt_log_warn(msg, ...) nt_log(NT_LOG_WARN, msg, __VA_ARGS__)
#define nt_log_error(msg, ...) nt_log(NT_LOG_ERROR, msg, __VA_ARGS__)
#define nt_log_debug(msg, ...) nt_log(NT_LOG_DEBUG, msg, __VA_ARGS__)

#endif
