/* nt_hist_quota: the per-tenant storage budget of the room history — bytes a tenant may
 * store through this node within one retention window (docs/security.md, "History"). */
#ifndef NT_HIST_QUOTA_H
#define NT_HIST_QUOTA_H

#include <stddef.h>
#include <stdint.h>

/* Not thread-safe: one history (its loop thread) owns one quota. Tenant names are copied.
 *
 * The window (the history's max age) is cut into NT_HQ_SLICES slices; a tenant's usage is
 * the sum of the last NT_HQ_SLICES + 1 slices, which always covers every message younger
 * than the window — so while a message can still be in the stream its bytes are counted,
 * and what one tenant holds in the stream through one node never exceeds the budget. */
#define NT_HQ_SLICES 16

typedef struct nt_hist_quota nt_hist_quota;

/* A quota of `budget` bytes per tenant over `window_ms` (> 0). budget 0: no quota (every
 * take succeeds and nothing is tracked). Returns NULL when memory is short. */
nt_hist_quota *nt_hist_quota_new(uint64_t budget, uint64_t window_ms);
void nt_hist_quota_free(nt_hist_quota *q);

/* Charges `bytes` to the tenant of the room subject `subject` ("natter.room.<t>.<r>") at
 * monotonic time `now_ms`. Returns 0 (charged), NT_ELIMIT (the tenant would exceed its
 * budget: nothing charged), NT_EINVAL (not a room subject) or NT_ENOMEM. Tenants whose
 * window is empty are forgotten, at most once per slice, so memory follows active
 * tenants. */
int nt_hist_quota_take(nt_hist_quota *q, const char *subject, size_t bytes, uint64_t now_ms);

/* Bytes charged to `tenant` and still in its window (0 for an unknown tenant). */
uint64_t nt_hist_quota_used(nt_hist_quota *q, const char *tenant, uint64_t now_ms);

/* The window of a history configuration: its max age, or a day when it keeps messages
 * without an age limit (the quota then bounds what a tenant stores per day). */
struct nt_hist_cfg;
uint64_t nt_hist_quota_window_ms(const struct nt_hist_cfg *cfg);

/* The one admission rule of both histories: 1 when a publication of `len` bytes on
 * `subject` must go live-only — larger than max_msg_bytes (0: no limit) or over its
 * tenant's budget (`q` NULL: no quota) — else 0 (and the bytes are charged). */
int nt_hist_over_quota(nt_hist_quota *q, size_t max_msg_bytes, const char *subject,
                       size_t len, uint64_t now_ms);

/* Tenants tracked now. */
size_t nt_hist_quota_tenants(const nt_hist_quota *q);

#endif
