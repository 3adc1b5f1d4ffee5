/* nt_static: demo page files under --static-dir, and the development token endpoint. */
#ifndef NT_STATIC_H
#define NT_STATIC_H

#include <stddef.h>

#include "nt_config.h"
#include "nt_conn.h"
#include "nt_http.h"

/* Answers GET/HEAD of a file under `dir` ("/" serves index.html) and closes after the
 * response: 200 with the content type of its extension, 404 for anything missing, any
 * path with "..", a NUL or a backslash, dotfiles, anything that resolves outside `dir`
 * (a symlink to elsewhere, even through a symlinked directory: openat2 RESOLVE_BENEATH),
 * or non-regular files (FIFOs, devices, directories: opened O_NONBLOCK, so never waited
 * on); 405 for other methods. Regular files are read with one read (demo assets are
 * small; files above 4 MiB are refused with 404). "/natter.js" is answered from the file
 * `client_js` (--client-js, the JavaScript client's package) when it is set and not
 * empty, and from `dir` otherwise. */
void nt_static_serve(const char *dir, const char *client_js, nt_conn *c,
                     const nt_http_req *req);

/* Returns the content type for a file name (static string). */
const char *nt_static_content_type(const char *path);

/* DEVELOPMENT ONLY (--dev-tokens on): mints an HS* token for ?user=&tenant= valid one
 * hour, signed with --jwt-secret, into `body` as {"token":"…"}. Returns the HTTP status
 * (200, 400 for bad ids, 404 when minting is impossible with the configured algorithm). */
int nt_static_dev_token(const nt_config *cfg, const char *target, char *body, size_t cap);

#endif
