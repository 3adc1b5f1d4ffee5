/* nt_testsrv: starts and stops real nats-server / redis-server children on loopback ports. */
#include "nt_testsrv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int nt_testsrv_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}


/* fork/exec of argv; the child dies with us (PR_SET_PDEATHSIG) so a crashed test leaves
 * no server behind. */
static pid_t spawn(char *const argv[]) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid; /* -1 or the child */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127); /* parent already gone */
  if (!getenv("NT_TESTSRV_VERBOSE")) {
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
      dup2(fd, 0);
      dup2(fd, 1);
      dup2(fd, 2);
      if (fd > 2) close(fd);
    }
  }
  execvp(argv[0], argv);
  _exit(127);
}

static int port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  struct sockaddr_in a = loopback(port);
  int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

int nt_testsrv_wait_port(int port, int timeout_ms) {
  long deadline = now_ms() + timeout_ms;
  while (!port_open(port)) {
    if (now_ms() >= deadline) return -1;
    sleep_ms(20);
  }
  return 0;
}

static int await_child(nt_testsrv *s, pid_t pid, int timeout_ms);

static int start(nt_testsrv *s, int timeout_ms) {
  /* someone else on the port would answer our readiness probe */
  if (port_open(s->port) || (s->mon_port && port_open(s->mon_port))) return -1;
  char port[16], mon[16];
  snprintf(port, sizeof port, "%d", s->port);
  snprintf(mon, sizeof mon, "%d", s->mon_port);
  pid_t pid;
  if (s->kind == NT_TESTSRV_NATS) {
    char *argv[] = {"nats-server", "-a", "127.0.0.1", "-p", port, "-m", mon, NULL, NULL, NULL,
                    NULL};
    if (s->js_dir[0]) {
      argv[7] = "-js";
      argv[8] = "-sd";
      argv[9] = s->js_dir;
    }
    pid = spawn(argv);
  } else {
    char *argv[] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", NULL};
    pid = spawn(argv);
  }
  return await_child(s, pid, timeout_ms);
}

int nt_testsrv_cmd_start(nt_testsrv *s, char *const argv[], int port, int timeout_ms) {
  memset(s, 0, sizeof *s);
  s->kind = NT_TESTSRV_CMD;
  s->port = port;
  if (port <= 0 || port_open(port)) return -1;
  return await_child(s, spawn(argv), timeout_ms);
}

/* Waits until the child `pid` listens on s->port; stops it on timeout. */
static int await_child(nt_testsrv *s, pid_t pid, int timeout_ms) {
  if (pid < 0) return -1;
  s->pid = pid;
  long deadline = now_ms() + timeout_ms;
  for (;;) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) { /* exited: bad binary or port taken */
      s->pid = 0;
      return -1;
    }
    if (port_open(s->port)) return 0;
    if (now_ms() >= deadline) {
      nt_testsrv_stop(s);
      return -1;
    }
    sleep_ms(20);
  }
}

int nt_testsrv_nats_start(nt_testsrv *s, int port, int mon_port, int timeout_ms) {
  memset(s, 0, sizeof *s);
  s->kind = NT_TESTSRV_NATS;
  s->port = port ? port : nt_testsrv_free_port();
  s->mon_port = mon_port ? mon_port : nt_testsrv_free_port();
  if (s->port <= 0 || s->mon_port <= 0 || s->port == s->mon_port) return -1;
  return start(s, timeout_ms);
}

int nt_testsrv_nats_start_js(nt_testsrv *s, int port, int mon_port, const char *store_dir,
                             int timeout_ms) {
  memset(s, 0, sizeof *s);
  s->kind = NT_TESTSRV_NATS;
  s->port = port ? port : nt_testsrv_free_port();
  s->mon_port = mon_port ? mon_port : nt_testsrv_free_port();
  if (!store_dir || strlen(store_dir) >= sizeof s->js_dir) return -1;
  snprintf(s->js_dir, sizeof s->js_dir, "%s", store_dir);
  if (s->port <= 0 || s->mon_port <= 0 || s->port == s->mon_port) return -1;
  return start(s, timeout_ms);
}

int nt_testsrv_redis_start(nt_testsrv *s, int port, int timeout_ms) {
  memset(s, 0, sizeof *s);
  s->kind = NT_TESTSRV_REDIS;
  s->port = port ? port : nt_testsrv_free_port();
  if (s->port <= 0) return -1;
  return start(s, timeout_ms);
}

int nt_testsrv_restart(nt_testsrv *s, int timeout_ms) {
  if (s->pid || !s->kind || s->kind == NT_TESTSRV_CMD) return -1;
  return start(s, timeout_ms);
}

void nt_testsrv_stop(nt_testsrv *s) {
  if (s->pid <= 0) return;
  pid_t pid = s->pid;
  s->pid = 0;
  int st;
  if (kill(pid, SIGTERM) == 0) {
    long deadline = now_ms() + 3000;
    while (now_ms() < deadline) {
      pid_t r = waitpid(pid, &st, WNOHANG);
      if (r == pid || (r < 0 && errno == ECHILD)) return;
      sleep_ms(10);
    }
    kill(pid, SIGKILL);
  }
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
}

int nt_testsrv_http_get(int port, const char *path, char *body, size_t cap) {
  if (cap == 0) return -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct timeval tv = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = loopback(port);
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 || n <= 0 ||
      write(fd, req, (size_t)n) != n) {
    close(fd);
    return -1;
  }
  size_t got = 0, max = 64 * 1024;
  char *buf = malloc(max + 1);
  if (!buf) {
    close(fd);
    return -1;
  }
  ssize_t r;
  while (got < max && (r = read(fd, buf + got, max - got)) > 0) got += (size_t)r;
  close(fd);
  buf[got] = '\0';
  char *p = strstr(buf, "\r\n\r\n");
  int len = -1;
  if (p && strncmp(buf, "HTTP/1.", 7) == 0 && strncmp(buf + 9, "200", 3) == 0) {
    p += 4;
    size_t bl = strlen(p);
    if (bl >= cap) bl = cap - 1;
    memcpy(body, p, bl);
    body[bl] = '\0';
    len = (int)bl;
  }
  free(buf);
  return len;
}

long nt_testsrv_json_int(const char *json, const char *key) {
  char pat[128];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *p = strstr(json, pat);
  if (!p) return -1;
  p += strlen(pat);
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':') p++;
  char *end;
  long v = strtol(p, &end, 10);
  return end == p ? -1 : v;
}
