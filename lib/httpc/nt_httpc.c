/* nt_httpc: libcurl's multi interface driven by libuv (uv_poll per socket, one uv_timer). */
#include "nt_httpc.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nt_err.h"

typedef struct hreq hreq;
struct hreq {
  nt_httpc *h;
  hreq *prev, *next;       /* in h->queue or h->running */
  CURL *easy;              /* NULL while queued */
  struct curl_slist *hdrs;
  char *url;
  char *body;
  size_t len;
  char *rbuf;              /* response body, NUL-terminated */
  size_t rlen, rcap;
  int too_big;
  uint64_t start, deadline; /* uv_now ms */
  nt_httpc_cb cb;
  void *ud;
};

typedef struct hsock {
  uv_poll_t poll;          /* poll.data == the hsock */
  curl_socket_t fd;
  nt_httpc *h;
  struct hsock *prev, *next;
} hsock;

typedef struct hlist {
  hreq *head, *tail;
  size_t n;
} hlist;

struct nt_httpc {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;        /* libcurl's timeout */
  uv_timer_t qtimer;       /* expires queued requests past their deadline */
  nt_httpc_opts o;
  char *user_agent;
  hlist queue, running;
  hsock *socks;
  int handles;             /* open uv handles; freed when the last closes */
  int closing;
};

/* ================================================================ lists ========== */

static void list_push(hlist *l, hreq *r) {
  r->next = NULL;
  r->prev = l->tail;
  if (l->tail) l->tail->next = r;
  else l->head = r;
  l->tail = r;
  l->n++;
}

static void list_del(hlist *l, hreq *r) {
  if (r->prev) r->prev->next = r->next;
  else l->head = r->next;
  if (r->next) r->next->prev = r->prev;
  else l->tail = r->prev;
  r->prev = r->next = NULL;
  l->n--;
}

/* ================================================================ completion ===== */

static void req_free(hreq *r) {
  if (r->easy) curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->hdrs);
  free(r->url);
  free(r->body);
  free(r->rbuf);
  free(r);
}

static int map_curl(CURLcode c, const hreq *r) {
  switch (c) {
  case CURLE_OK: return 0;
  case CURLE_OPERATION_TIMEDOUT: return NT_ETIMEOUT;
  case CURLE_FILESIZE_EXCEEDED: return NT_ETOOLARGE;
  case CURLE_WRITE_ERROR: return r->too_big ? NT_ETOOLARGE : NT_EIO;
  case CURLE_OUT_OF_MEMORY: return NT_ENOMEM;
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_HTTP2:
  case CURLE_BAD_CONTENT_ENCODING:
  case CURLE_PARTIAL_FILE: return NT_EPROTO;
  default: return NT_EIO;
  }
}

/* Takes `r` off its list, calls its callback once with `err` (or its response), frees it. */
static void finish(hreq *r, int err) {
  nt_httpc *h = r->h;
  nt_httpc_resp resp = {.err = err, .body = "", .body_len = 0};
  if (r->easy) {
    list_del(&h->running, r);
    curl_multi_remove_handle(h->multi, r->easy);
    if (!err) {
      long code = 0;
      char *ct = NULL;
      curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
      curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ct);
      resp.status = (int)code;
      resp.content_type = ct;
      if (r->rbuf) {
        resp.body = r->rbuf;
        resp.body_len = r->rlen;
      }
      if (code < 100) resp.err = NT_EPROTO;
    }
  } else {
    list_del(&h->queue, r);
  }
  resp.elapsed_s = (double)(uv_now(h->loop) - r->start) / 1000.0;
  r->cb(r->ud, &resp);
  req_free(r);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud) {
  hreq *r = ud;
  size_t n = size * nmemb;
  if (r->rlen + n > r->h->o.max_body) {
    r->too_big = 1;
    return 0; /* libcurl aborts the transfer with CURLE_WRITE_ERROR */
  }
  if (r->rlen + n + 1 > r->rcap) {
    size_t cap = r->rcap ? r->rcap : 1024;
    while (cap < r->rlen + n + 1) cap *= 2;
    char *nb = realloc(r->rbuf, cap);
    if (!nb) return 0;
    r->rbuf = nb;
    r->rcap = cap;
  }
  memcpy(r->rbuf + r->rlen, data, n);
  r->rlen += n;
  r->rbuf[r->rlen] = '\0';
  return n;
}

/* Starts `r` (queued or new) as a transfer; 0 or a negative code (r untouched). */
static int start(nt_httpc *h, hreq *r) {
  uint64_t now = uv_now(h->loop);
  long left = r->deadline > now ? (long)(r->deadline - now) : 1;
  CURL *e = curl_easy_init();
  if (!e) return NT_ENOMEM;
  int bad = 0;
  bad |= curl_easy_setopt(e, CURLOPT_URL, r->url) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, left) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->o.max_body) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, r) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK;
  if (bad || curl_multi_add_handle(h->multi, e) != CURLM_OK) {
    curl_easy_cleanup(e);
    return NT_EINTERNAL;
  }
  r->easy = e;
  list_push(&h->running, r);
  return 0;
}

/* Moves queued requests into free slots, oldest first. */
static void pump(nt_httpc *h) {
  while (!h->closing && h->queue.head && h->running.n < h->o.max_inflight) {
    hreq *r = h->queue.head;
    if (r->deadline <= uv_now(h->loop)) {
      finish(r, NT_ETIMEOUT);
      continue;
    }
    list_del(&h->queue, r);
    int rc = start(h, r);
    if (rc) {
      r->cb(r->ud, &(nt_httpc_resp){.err = rc, .body = ""});
      req_free(r);
    }
  }
  if (!h->queue.head) uv_timer_stop(&h->qtimer);
}

static void drain_done(nt_httpc *h) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(h->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    hreq *r = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    CURLcode res = m->data.result; /* m is invalid after remove_handle */
    finish(r, map_curl(res, r));
  }
  pump(h);
}

/* ================================================================ libuv glue ===== */

static void on_handle_closed(uv_handle_t *hd) {
  nt_httpc *h;
  if (hd->type == UV_POLL) {
    hsock *s = hd->data;
    h = s->h;
    free(s);
  } else {
    h = hd->data;
  }
  if (--h->handles == 0) {
    free(h->user_agent);
    free(h);
  }
}

static void on_poll(uv_poll_t *p, int status, int events) {
  hsock *s = p->data;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  nt_httpc *h = s->h;
  curl_multi_socket_action(h->multi, s->fd, flags, &running);
  drain_done(h);
}

static void sock_close(nt_httpc *h, hsock *s) {
  if (s->prev) s->prev->next = s->next;
  else h->socks = s->next;
  if (s->next) s->next->prev = s->prev;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_handle_closed);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
  nt_httpc *h = userp;
  hsock *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      curl_multi_assign(h->multi, fd, NULL);
      sock_close(h, s);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) return -1;
    if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->fd = fd;
    s->h = h;
    s->poll.data = s;
    s->next = h->socks;
    if (h->socks) h->socks->prev = s;
    h->socks = s;
    h->handles++;
    curl_multi_assign(h->multi, fd, s);
  }
  int ev = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev |= UV_WRITABLE;
  uv_poll_start(&s->poll, ev, on_poll);
  return 0;
}

static void on_timer(uv_timer_t *t) {
  nt_httpc *h = t->data;
  int running;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  drain_done(h);
}

/* libcurl asks for its timeout to be (re)armed; the action runs from the timer, never
 * from inside this callback. */
static int on_curl_timer(CURLM *m, long timeout_ms, void *userp) {
  nt_httpc *h = userp;
  if (timeout_ms < 0) uv_timer_stop(&h->timer);
  else uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

static void on_qtimer(uv_timer_t *t) {
  nt_httpc *h = t->data;
  uint64_t now = uv_now(h->loop);
  for (hreq *r = h->queue.head, *next; r; r = next) {
    next = r->next;
    if (r->deadline <= now) finish(r, NT_ETIMEOUT);
  }
  if (!h->queue.head) uv_timer_stop(&h->qtimer);
}

/* ================================================================ public ========= */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_rc;
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT) != 0; }

nt_httpc *nt_httpc_new(uv_loop_t *loop, const nt_httpc_opts *opts) {
  if (!opts || opts->max_inflight < 1 || opts->max_body < 1) return NULL;
  pthread_once(&global_once, global_init);
  if (global_rc) return NULL;
  nt_httpc *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->loop = loop;
  h->o = *opts;
  h->o.user_agent = NULL;
  h->user_agent = strdup(opts->user_agent ? opts->user_agent : "natter");
  h->multi = curl_multi_init();
  if (!h->user_agent || !h->multi) {
    if (h->multi) curl_multi_cleanup(h->multi);
    free(h->user_agent);
    free(h);
    return NULL;
  }
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  /* Keep one idle connection per slot for reuse. */
  curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)opts->max_inflight);
  uv_timer_init(loop, &h->timer);
  uv_timer_init(loop, &h->qtimer);
  h->timer.data = h->qtimer.data = h;
  h->handles = 2;
  return h;
}

int nt_httpc_post(nt_httpc *h, const char *url, const char *const *headers, size_t nheaders,
                  const void *body, size_t len, uint64_t timeout_ms, nt_httpc_cb cb,
                  void *ud) {
  if (h->closing) return NT_ECLOSED;
  if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) || !timeout_ms ||
      !cb)
    return NT_EINVAL;
  int run_now = h->running.n < h->o.max_inflight && !h->queue.head;
  if (!run_now && h->queue.n >= h->o.max_queued) return NT_ELIMIT;
  hreq *r = calloc(1, sizeof *r);
  if (!r) return NT_ENOMEM;
  r->h = h;
  r->cb = cb;
  r->ud = ud;
  r->start = uv_now(h->loop);
  r->deadline = r->start + timeout_ms;
  r->url = strdup(url);
  r->body = malloc(len ? len : 1);
  r->len = len;
  int ok = r->url && r->body;
  if (ok && len) memcpy(r->body, body, len);
  /* "Expect:" turns off the 100-continue round trip libcurl adds to larger POSTs. */
  struct curl_slist *l = ok ? curl_slist_append(NULL, "Expect:") : NULL;
  ok = l != NULL;
  for (size_t i = 0; ok && i < nheaders; i++) {
    struct curl_slist *nl = curl_slist_append(l, headers[i]);
    if (!nl) ok = 0;
    else l = nl;
  }
  r->hdrs = l;
  if (!ok) {
    req_free(r);
    return NT_ENOMEM;
  }
  if (!run_now) {
    list_push(&h->queue, r);
    if (!uv_is_active((uv_handle_t *)&h->qtimer))
      uv_timer_start(&h->qtimer, on_qtimer, 100, 100);
    return 0;
  }
  int rc = start(h, r);
  if (rc) req_free(r);
  return rc;
}

size_t nt_httpc_inflight(const nt_httpc *h) { return h->running.n; }
size_t nt_httpc_queued(const nt_httpc *h) { return h->queue.n; }

void nt_httpc_close(nt_httpc *h) {
  h->closing = 1;
  while (h->queue.head) finish(h->queue.head, NT_ECLOSED);
  while (h->running.head) finish(h->running.head, NT_ECLOSED);
  curl_multi_cleanup(h->multi); /* may report sockets removed through on_socket */
  h->multi = NULL;
  while (h->socks) sock_close(h, h->socks);
  uv_timer_stop(&h->timer);
  uv_timer_stop(&h->qtimer);
  uv_close((uv_handle_t *)&h->timer, on_handle_closed);
  uv_close((uv_handle_t *)&h->qtimer, on_handle_closed);
}
