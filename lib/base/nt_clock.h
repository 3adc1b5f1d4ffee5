/* nt_clock: wall-clock milliseconds and their RFC 3339 form. Stateless, any thread. */
#ifndef NT_CLOCK_H
#define NT_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Unix time in milliseconds (CLOCK_REALTIME): origin timestamps, token expiry. */
int64_t nt_now_ms(void);

/* Unix ms as RFC 3339 UTC with milliseconds ("2025-12-07T22:45:07.123Z") into `out`
 * (at least 32 bytes); returns out. */
char *nt_clock_rfc3339(int64_t ms, char *out);

#endif
