/* nt_testsrv: starts and stops real nats-server / redis-server (or any) children on loopback
 * ports. */
#ifndef NT_TESTSRV_H
#define NT_TESTSRV_H

#include <stddef.h>
#include <sys/types.h>

typedef struct nt_testsrv {
  pid_t pid;    /* 0 when not running */
  int port;     /* client port */
  int mon_port; /* nats-server HTTP monitoring port, 0 for redis */
  int kind;     /* NT_TESTSRV_NATS or NT_TESTSRV_REDIS */
  char js_dir[256]; /* nats-server with JetStream: its store directory ("" without) */
} nt_testsrv;

enum { NT_TESTSRV_NATS = 1, NT_TESTSRV_REDIS = 2, NT_TESTSRV_CMD = 3 };

/* Returns a TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
 * released), or -1. Another process may take it before the caller binds; tests accept
 * that small race. */
int nt_testsrv_free_port(void);

/* Starts `nats-server -a 127.0.0.1 -p <port> -m <mon_port>` and waits (up to
 * `timeout_ms`) until the client port accepts connections. `port` and `mon_port` 0 pick
 * free ports. Fills *s and returns 0, or -1 (nothing left running). The child gets
 * SIGKILL if the test process dies. Its output goes to /dev/null unless the environment
 * variable NT_TESTSRV_VERBOSE is set. */
int nt_testsrv_nats_start(nt_testsrv *s, int port, int mon_port, int timeout_ms);

/* Same with JetStream enabled (`-js -sd <store_dir>`); a restart keeps the store. */
int nt_testsrv_nats_start_js(nt_testsrv *s, int port, int mon_port, const char *store_dir,
                             int timeout_ms);

/* Starts `redis-server --port <port> --bind 127.0.0.1 --save '' --appendonly no`, same
 * rules. */
int nt_testsrv_redis_start(nt_testsrv *s, int port, int timeout_ms);

/* Starts any server `argv` (argv[0] looked up in PATH) that listens on 127.0.0.1:`port`,
 * same rules (kind NT_TESTSRV_CMD; it cannot be restarted). */
int nt_testsrv_cmd_start(nt_testsrv *s, char *const argv[], int port, int timeout_ms);

/* Starts the same kind of server again on the same ports (after nt_testsrv_stop). */
int nt_testsrv_restart(nt_testsrv *s, int timeout_ms);

/* Stops the child by its PID: SIGTERM, up to 3 s of grace, then SIGKILL; reaps it.
 * Safe to call when not running. */
void nt_testsrv_stop(nt_testsrv *s);

/* Returns 0 once 127.0.0.1:`port` accepts a TCP connection, -1 after `timeout_ms`. */
int nt_testsrv_wait_port(int port, int timeout_ms);

/* Blocking HTTP/1.0 GET of http://127.0.0.1:<port><path> (timeouts 2 s). Writes the body,
 * NUL-terminated and truncated to `cap`, and returns its length, or -1. */
int nt_testsrv_http_get(int port, const char *path, char *body, size_t cap);

/* Returns the integer value of the first `"key": <n>` in `json`, or -1. */
long nt_testsrv_json_int(const char *json, const char *key);

#endif
