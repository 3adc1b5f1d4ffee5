/* nt_static: static file answers for the demo page, plus dev-only token minting. */
#include "nt_static.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <http_parser.h>

#include "nt_err.h"
#include "nt_subject.h"

#define STATIC_MAX_BYTES (4u << 20)

static const struct {
  const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},  {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},          {".svg", "image/svg+xml"},
    {".png", "image/png"},                  {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},  {".map", "application/json"},
};

const char *nt_static_content_type(const char *path) {
  const char *dot = strrchr(path, '.');
  if (dot)
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
      if (!strcasecmp(dot, types[i].ext)) return types[i].type;
  return "application/octet-stream";
}

static void answer(nt_conn *c, int status, const char *type, const void *body, size_t len,
                   int head) {
  size_t out_len;
  char *resp = nt_http_response(status, type, body, len,
                                "X-Content-Type-Options: nosniff\r\n", 0, &out_len);
  if (resp) nt_conn_send_raw(c, resp, head ? out_len - len : out_len);
  free(resp);
  nt_conn_close_after_flush(c, NT_CLOSE_CLIENT);
}

static void not_found(nt_conn *c) {
  answer(c, 404, "text/plain; charset=utf-8", "not found\n", 10, 0);
}

/* A request path is served only when every segment is a plain name: no "..", no dotfiles
 * (which also covers "."), no backslashes or NULs, no percent-escapes (none are needed
 * for the demo files, and refusing them closes every decoding trick). */
static int safe_path(const char *p, size_t len) {
  if (len == 0 || p[0] != '/') return 0;
  /* The static directory is usually a source tree: never serve its tooling. */
  static const char *const hidden[] = {"/node_modules/", "/test/", "/package.json",
                                       "/package-lock.json"};
  for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++) {
    size_t hl = strlen(hidden[i]);
    for (size_t k = 0; k + hl <= len; k++)
      if (!strncmp(p + k, hidden[i], hl) && (hidden[i][hl - 1] == '/' || k + hl == len))
        return 0;
  }
  for (size_t i = 0; i < len; i++) {
    char ch = p[i];
    if (ch == '\\' || ch == '\0' || ch == '%') return 0;
    if (ch == '/' && i + 1 < len && p[i + 1] == '.') return 0;
    if (ch == '/' && i + 1 < len && p[i + 1] == '/') return 0;
  }
  return 1;
}

/* Opens `rel` (relative, no leading '/') for reading strictly beneath `dir`: openat2 with
 * RESOLVE_BENEATH refuses any resolution — "..", an absolute or a symlink target — that
 * leaves the directory; kernels without openat2 (before 5.6) get the same rule from a
 * realpath check. O_NONBLOCK: opening a FIFO (or a device) never waits for a writer, and
 * serve_file's fstat then refuses anything that is not a regular file. -1 on failure. */
static int open_beneath(const char *dir, const char *rel) {
  const int flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
  int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return -1;
  struct open_how how = {.flags = flags, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
  int fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof how);
  int err = errno;
  close(dfd);
  if (fd >= 0 || err != ENOSYS) return fd;
  char full[PATH_MAX], rdir[PATH_MAX], rfile[PATH_MAX];
  int n = snprintf(full, sizeof full, "%s/%s", dir, rel);
  if (n < 0 || (size_t)n >= sizeof full || !realpath(dir, rdir) || !realpath(full, rfile))
    return -1;
  size_t dl = strlen(rdir);
  if (strncmp(rfile, rdir, dl) || rfile[dl] != '/') return -1;
  return open(rfile, flags | O_NOFOLLOW);
}

/* Answers 200 with the opened file `fd` (closed here) named `name` when it is a regular
 * file, 404 when it is missing (fd < 0), not regular or too large. */
static void serve_file(nt_conn *c, int fd, const char *name, int head) {
  struct stat st;
  if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX_BYTES) {
    if (fd >= 0) close(fd);
    not_found(c);
    return;
  }
  char *buf = malloc((size_t)st.st_size + 1);
  ssize_t got = buf ? read(fd, buf, (size_t)st.st_size) : -1;
  close(fd);
  if (got != st.st_size) {
    free(buf);
    answer(c, 500, "text/plain", "read error\n", 11, 0);
    return;
  }
  answer(c, 200, nt_static_content_type(name), buf, (size_t)got, head);
  free(buf);
}

void nt_static_serve(const char *dir, const char *client_js, nt_conn *c,
                     const nt_http_req *req) {
  int head = req->method == HTTP_HEAD;
  if (req->method != HTTP_GET && !head) {
    answer(c, 405, "text/plain; charset=utf-8", "method not allowed\n", 19, 0);
    return;
  }
  static const char client_path[] = "/natter.js";
  if (client_js && *client_js && req->path_len == sizeof client_path - 1 &&
      !memcmp(req->target, client_path, sizeof client_path - 1)) {
    /* the operator's own file (--client-js): symlinks allowed, never a blocking open */
    serve_file(c, open(client_js, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC), client_js, head);
    return;
  }
  if (!dir || !safe_path(req->target, req->path_len) || req->path_len > 512) {
    not_found(c);
    return;
  }
  char path[1024];
  size_t rl = req->path_len;
  int n = (rl == 1) ? snprintf(path, sizeof path, "index.html")
                    : snprintf(path, sizeof path, "%.*s", (int)rl - 1, req->target + 1);
  if (n < 0 || (size_t)n >= sizeof path) {
    not_found(c);
    return;
  }
  serve_file(c, open_beneath(dir, path), path, head);
}

int nt_static_dev_token(const nt_config *cfg, const char *target, char *body, size_t cap) {
  char user[NT_ID_MAX + 1], tenant[NT_ID_MAX + 1];
  const char *alg = cfg->jwt_alg ? cfg->jwt_alg : "HS256";
  if (!cfg->jwt_secret || strncmp(alg, "HS", 2)) {
    snprintf(body, cap, "dev tokens need an HS* --jwt-secret\n");
    return 404;
  }
  if (nt_http_query_param(target, "user", user, sizeof user) <= 0 || !nt_id_valid(user)) {
    snprintf(body, cap, "give ?user=<id> (1-128 bytes, no . * > spaces)\n");
    return 400;
  }
  if (nt_http_query_param(target, "tenant", tenant, sizeof tenant) <= 0)
    snprintf(tenant, sizeof tenant, "demo");
  if (!nt_id_valid(tenant)) {
    snprintf(body, cap, "invalid tenant\n");
    return 400;
  }
  jwt_t *jwt = NULL;
  char *tok = NULL;
  if (!jwt_new(&jwt) &&
      !jwt_set_alg(jwt, jwt_str_alg(alg), (const unsigned char *)cfg->jwt_secret,
                   (int)strlen(cfg->jwt_secret)) &&
      !jwt_add_grant(jwt, "sub", user) && !jwt_add_grant(jwt, "tenant", tenant) &&
      !jwt_add_grant_int(jwt, "exp", (long)time(NULL) + 3600))
    tok = jwt_encode_str(jwt);
  jwt_free(jwt);
  if (!tok) {
    snprintf(body, cap, "cannot mint token\n");
    return 500;
  }
  /* ids may hold '"' and '\\' (nt_id_check): jansson escapes them */
  json_t *o = json_pack("{s:s, s:s, s:s, s:i}", "token", tok, "userId", user, "tenantId",
                        tenant, "expiresIn", 3600);
  free(tok);
  size_t n = o ? json_dumpb(o, body, cap - 1, JSON_COMPACT | JSON_PRESERVE_ORDER) : 0;
  json_decref(o);
  if (!n || n > cap - 1) { /* json_dumpb says what it needed: more means cut */
    snprintf(body, cap, "cannot mint token\n");
    return 500;
  }
  body[n] = '\0';
  return 200;
}
