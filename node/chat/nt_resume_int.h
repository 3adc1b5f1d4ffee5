/* nt_resume_int: what nt_resume.c and nt_resume_page.c share — the chat layer's history
 * state and the read operations both start. Internal to those two files; loop thread
 * only. */
#ifndef NT_RESUME_INT_H
#define NT_RESUME_INT_H

#include <stddef.h>
#include <stdint.h>

#include "nt_history.h"
#include "nt_chat.h"
#include "nt_proto.h"
#include "nt_recent.h"
#include "nt_resume.h"

typedef struct nt_resume nt_resume;

struct nt_resume {
  nt_history *h;
  size_t replay_max;
  size_t recent_max;           /* --history-recent, at most replay_max */
  uint64_t max_age_ms;         /* --history-max-age (0: none) */
  nt_recent_budget recent;     /* --history-recent-bytes over all rooms */
  uint64_t next_id;
  uint64_t log_at;
  uv_timer_t *pace;            /* tops up paced replays (nt_resume.c); NULL until needed */
  struct {
    uint64_t resumes, recovered, not_recovered, replayed, gaps, gaps_repaired,
        gaps_unrepaired, dups, live_only, pages, page_errors, overflows, paced,
        from_memory, coalesced;
  } m;
};

/* One read of the history, freed after its callback (nt_resume_on_fetched). */
enum { F_RESUME, F_RS_REPAIR, F_ROOM_REPAIR, F_PAGE, F_API };

typedef struct fetch_op {
  nt_chat *n;
  int kind;
  uint64_t id;                   /* resumer or repair id */
  uint64_t after;                /* F_RESUME: the `since` it reads after */
  uint64_t upto;
  char subject[NT_SUBJECT_MAX];  /* the room's */
  nt_conn *c;                    /* F_PAGE: referenced until the callback */
  char tenant[NT_ID_MAX + 1], room[NT_ID_MAX + 1];
  char reqid[NT_REQID_MAX + 1];
  nt_resume_page_cb cb;          /* F_API */
  void *ud;
} fetch_op;

/* A zeroed op for the room `subject`; NULL when memory is short. */
fetch_op *nt_resume_op_new(nt_chat *n, int kind, const char *subject);
/* The history's callback for every op: dispatches by kind, then frees the op. */
void nt_resume_on_fetched(void *ud, const nt_hist_result *hr);
/* nt_resume_page.c: completes an F_PAGE or F_API read (answers the client or the API). */
void nt_resume_page_done(nt_chat *n, fetch_op *op, const nt_hist_result *hr);

#endif
