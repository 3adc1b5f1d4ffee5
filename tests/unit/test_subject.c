/* test_subject: id validation, NATS subject builders and parsing, Redis key builders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "nt_err.h"
#include "nt_subject.h"

/* ---------------------------------------------------------------- ids -------- */

static void test_id_valid(void **state) {
  (void)state;
  const char *ok[] = {
      "a", "room-1", "user_42", "Team+Chat", "x@y", "#general", "a/b", "a|b", "a,b",
      "\xc3\xa9t\xc3\xa9",                 /* "été" (2-byte sequences) */
      "\xe6\x97\xa5\xe6\x9c\xac",          /* "日本" (3-byte) */
      "\xf0\x9f\x98\x80",                  /* U+1F600 (4-byte) */
      "\xef\xbf\xbd",                      /* U+FFFD */
      "~!@#$%^&()[]<=?;'\"\\`",            /* punctuation that is not special */
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    assert_true(nt_id_valid(ok[i]));
    assert_int_equal(nt_id_check(ok[i], strlen(ok[i])), 0);
  }
}

static void test_id_length(void **state) {
  (void)state;
  char buf[NT_ID_MAX + 2];
  memset(buf, 'a', sizeof buf);
  buf[NT_ID_MAX] = '\0';
  assert_int_equal(strlen(buf), 128);
  assert_true(nt_id_valid(buf));
  buf[NT_ID_MAX] = 'a';
  buf[NT_ID_MAX + 1] = '\0';
  assert_int_equal(strlen(buf), 129);
  assert_false(nt_id_valid(buf));
  assert_int_equal(nt_id_check(buf, 129), NT_EINVAL);
  assert_int_equal(nt_id_check(buf, 128), 0); /* a prefix of it is fine */
  assert_false(nt_id_valid(""));
  assert_int_equal(nt_id_check("abc", 0), NT_EINVAL);
  assert_false(nt_id_valid(NULL));
  assert_int_equal(nt_id_check(NULL, 3), NT_EINVAL);
  /* a 128-byte id made of multibyte characters (32 x U+1F600) */
  char mb[NT_ID_MAX + 1];
  for (int i = 0; i < 32; i++) memcpy(mb + 4 * i, "\xf0\x9f\x98\x80", 4);
  mb[128] = '\0';
  assert_true(nt_id_valid(mb));
}

static void test_id_rejects_specials(void **state) {
  (void)state;
  const char *bad[] = {
      ".", "a.b", "a.", ".a", "*", "a*", ">", "a>b", " ", "a b", "a\tb", "a\nb", "a\rb",
      "a\vb", "a\fb", "{", "a{b", "}", "a}b", ":", "a:b", "\x7f", "a\x7f", "\x01", "a\x1f",
      "\x1b[31m",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (nt_id_valid(bad[i])) fail_msg("accepted bad id #%zu", i);
  }
  /* every control character, alone and inside an id */
  for (int c = 0; c < 0x20; c++) {
    char s[4] = {'a', (char)c, 'b', 0};
    assert_int_equal(nt_id_check(s, 3), NT_EINVAL);
  }
  /* an embedded NUL (length-checked variant) */
  assert_int_equal(nt_id_check("a\0b", 3), NT_EINVAL);
}

/* Unicode whitespace, C1 controls and format characters look like nothing (or like
 * something else) in logs and UIs: refused alone, at either end and inside an id. */
static void test_id_rejects_unicode_space_and_format(void **state) {
  (void)state;
  const char *bad[] = {
      "\xc2\xa0",         /* U+00A0 no-break space */
      "\xc2\x85",         /* U+0085 next line (C1) */
      "\xc2\x9b",         /* U+009B CSI (C1) */
      "\xc2\xad",         /* U+00AD soft hyphen */
      "\xe1\x9a\x80",     /* U+1680 ogham space */
      "\xe1\xa0\x8e",     /* U+180E mongolian vowel separator */
      "\xe2\x80\x80",     /* U+2000 en quad */
      "\xe2\x80\x8a",     /* U+200A hair space */
      "\xe2\x80\x8b",     /* U+200B zero-width space */
      "\xe2\x80\x8d",     /* U+200D zero-width joiner */
      "\xe2\x80\x8f",     /* U+200F right-to-left mark */
      "\xe2\x80\xa8",     /* U+2028 line separator */
      "\xe2\x80\xa9",     /* U+2029 paragraph separator */
      "\xe2\x80\xae",     /* U+202E right-to-left override */
      "\xe2\x80\xaf",     /* U+202F narrow no-break space */
      "\xe2\x81\x9f",     /* U+205F medium mathematical space */
      "\xe2\x81\xa0",     /* U+2060 word joiner */
      "\xe2\x81\xa6",     /* U+2066 left-to-right isolate */
      "\xe3\x80\x80",     /* U+3000 ideographic space */
      "\xef\xbb\xbf",     /* U+FEFF BOM */
      "\xef\xbf\xb9",     /* U+FFF9 interlinear annotation anchor */
      "\xf3\xa0\x80\x81", /* U+E0001 language tag */
      "\xf3\xa0\x81\xbf", /* U+E007F cancel tag */
      "\xf0\x9d\x85\xb3", /* U+1D173 musical symbol begin beam */
  };
  char buf[32];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (nt_id_valid(bad[i])) fail_msg("accepted U+ id #%zu", i);
    snprintf(buf, sizeof buf, "admin%s", bad[i]);
    if (nt_id_valid(buf)) fail_msg("accepted suffix #%zu", i);
    snprintf(buf, sizeof buf, "%sadmin", bad[i]);
    if (nt_id_valid(buf)) fail_msg("accepted prefix #%zu", i);
    snprintf(buf, sizeof buf, "ad%smin", bad[i]);
    if (nt_id_valid(buf)) fail_msg("accepted infix #%zu", i);
  }
  /* neighbours of the refused ranges stay valid */
  const char *ok[] = {
      "\xc2\xa1",         /* U+00A1 inverted exclamation mark */
      "\xc2\xac",         /* U+00AC not sign */
      "\xe2\x80\x90",     /* U+2010 hyphen */
      "\xe2\x80\xa7",     /* U+2027 hyphenation point */
      "\xe2\x80\xb0",     /* U+2030 per mille */
      "\xe3\x80\x81",     /* U+3001 ideographic comma */
      "\xef\xbf\xbc",     /* U+FFFC object replacement character */
      "\xf3\xa0\x82\x80", /* U+E0080 */
      "\xd9\x84\xd8\xb9", /* Arabic letters */
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (!nt_id_valid(ok[i])) fail_msg("refused valid id #%zu", i);
}

static void test_id_rejects_invalid_utf8(void **state) {
  (void)state;
  const char *bad[] = {
      "\x80",                 /* lone continuation */
      "a\xbf",                /* continuation after ASCII */
      "\xc3",                 /* truncated 2-byte */
      "\xc0\xaf",             /* overlong '/' */
      "\xc1\xbf",             /* overlong */
      "\xe0\x80\xaf",         /* overlong 3-byte */
      "\xed\xa0\x80",         /* surrogate U+D800 */
      "\xf4\x90\x80\x80",     /* U+110000 */
      "\xf5\x80\x80\x80",     /* F5 never valid */
      "\xff",
      "\xe6\x97",             /* truncated 3-byte */
      "\xf0\x9f\x98",         /* truncated 4-byte */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (nt_id_valid(bad[i])) fail_msg("accepted invalid UTF-8 #%zu", i);
  }
  /* a valid multibyte character cut by the length */
  assert_int_equal(nt_id_check("\xe6\x97\xa5", 2), NT_EINVAL);
}

/* ---------------------------------------------------------------- subjects --- */

typedef int (*build2_fn)(char *, size_t, const char *, const char *);

static void check_build2(build2_fn fn, const char *prefix) {
  char out[NT_SUBJECT_MAX], want[NT_SUBJECT_MAX];
  int n = fn(out, sizeof out, "acme", "lobby");
  snprintf(want, sizeof want, "%sacme.lobby", prefix);
  assert_int_equal(n, (int)strlen(want));
  assert_string_equal(out, want);
  /* UTF-8 ids pass through untouched */
  n = fn(out, sizeof out, "t\xc3\xa9", "\xf0\x9f\x98\x80");
  snprintf(want, sizeof want, "%st\xc3\xa9.\xf0\x9f\x98\x80", prefix);
  assert_int_equal(n, (int)strlen(want));
  assert_string_equal(out, want);
  /* rejects in either position */
  const char *bad[] = {"", "a.b", "*", ">", "a b", "a\tb", "{x}", "a:b", "\xff", NULL};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(fn(out, sizeof out, bad[i], "room"), NT_EINVAL);
    assert_int_equal(fn(out, sizeof out, "acme", bad[i]), NT_EINVAL);
  }
  char longid[NT_ID_MAX + 2];
  memset(longid, 'x', NT_ID_MAX + 1);
  longid[NT_ID_MAX + 1] = '\0';
  assert_int_equal(fn(out, sizeof out, longid, "room"), NT_EINVAL);
  assert_int_equal(fn(out, sizeof out, "acme", longid), NT_EINVAL);
  /* two maximal ids fit in NT_SUBJECT_MAX */
  longid[NT_ID_MAX] = '\0';
  n = fn(out, sizeof out, longid, longid);
  assert_int_equal(n, (int)(strlen(prefix) + 2 * NT_ID_MAX + 1));
  /* buffer exactly the right size, and one byte short */
  size_t need = strlen(prefix) + strlen("acme.lobby") + 1;
  memset(out, '#', sizeof out);
  assert_int_equal(fn(out, need, "acme", "lobby"), (int)need - 1);
  assert_int_equal(out[need - 1], '\0');
  assert_int_equal(fn(out, need - 1, "acme", "lobby"), NT_ETOOLARGE);
  assert_int_equal(fn(out, 1, "acme", "lobby"), NT_ETOOLARGE);
}

static void test_subject_room(void **state) {
  (void)state;
  check_build2(nt_subject_room, "natter.room.");
}

static void test_subject_user(void **state) {
  (void)state;
  check_build2(nt_subject_user, "natter.user.");
  char out[NT_SUBJECT_MAX];
  assert_int_equal(nt_subject_user_all(out, sizeof out, "acme"), (int)strlen("natter.user.acme.*"));
  assert_string_equal(out, "natter.user.acme.*");
  assert_int_equal(nt_subject_user_all(out, sizeof out, "a.b"), NT_EINVAL);
  assert_int_equal(nt_subject_user_all(out, sizeof out, "*"), NT_EINVAL);
  assert_int_equal(nt_subject_user_all(out, 8, "acme"), NT_ETOOLARGE);
}

static void test_subject_presence(void **state) {
  (void)state;
  check_build2(nt_subject_presence, "natter.presence.");
}

static void test_subject_event(void **state) {
  (void)state;
  char out[NT_SUBJECT_MAX];
  const char *kinds[] = {"connect", "disconnect", "join", "leave"};
  for (size_t i = 0; i < 4; i++) {
    char want[64];
    snprintf(want, sizeof want, "natter.events.acme.%s", kinds[i]);
    assert_int_equal(nt_subject_event(out, sizeof out, "acme", kinds[i]), (int)strlen(want));
    assert_string_equal(out, want);
  }
  assert_int_equal(nt_subject_event(out, sizeof out, "a.b", "join"), NT_EINVAL);
  assert_int_equal(nt_subject_event(out, sizeof out, "acme", "*"), NT_EINVAL);
  assert_int_equal(nt_subject_event(out, sizeof out, "acme", ">"), NT_EINVAL);
  assert_int_equal(nt_subject_event(out, sizeof out, "", "join"), NT_EINVAL);
  assert_int_equal(nt_subject_event(out, 10, "acme", "join"), NT_ETOOLARGE);
}

static void test_subject_node(void **state) {
  (void)state;
  char out[NT_SUBJECT_MAX];
  assert_int_equal(nt_subject_node(out, sizeof out, "host-abc123"), 23);
  assert_string_equal(out, "natter.node.host-abc123");
  assert_int_equal(nt_subject_node(out, sizeof out, "a.b"), NT_EINVAL);
  assert_int_equal(nt_subject_node(out, sizeof out, ""), NT_EINVAL);
  assert_int_equal(nt_subject_node(out, sizeof out, NULL), NT_EINVAL);
  assert_int_equal(nt_subject_node(out, sizeof out, "n*"), NT_EINVAL);
  assert_int_equal(nt_subject_node(out, 24, "host-abc123"), 23);
  assert_int_equal(nt_subject_node(out, 23, "host-abc123"), NT_ETOOLARGE);
}

static void test_subject_route(void **state) {
  (void)state;
  char out[NT_SUBJECT_MAX];
  assert_int_equal(nt_subject_route(out, sizeof out, "getProfile"), 23);
  assert_string_equal(out, "natter.route.getProfile");
  assert_int_equal(nt_subject_route(out, sizeof out, "a.b"), NT_EINVAL);
  assert_int_equal(nt_subject_route(out, sizeof out, ">"), NT_EINVAL);
  assert_int_equal(nt_subject_route(out, sizeof out, "*"), NT_EINVAL);
  assert_int_equal(nt_subject_route(out, sizeof out, "do it"), NT_EINVAL);
  assert_int_equal(nt_subject_route(out, sizeof out, ""), NT_EINVAL);
  assert_int_equal(nt_subject_route(out, 23, "getProfile"), NT_ETOOLARGE);
}

static void test_subject_parse2(void **state) {
  (void)state;
  char subj[NT_SUBJECT_MAX], t[NT_ID_MAX + 1], id[NT_ID_MAX + 1];
  assert_true(nt_subject_room(subj, sizeof subj, "acme", "lobby") > 0);
  assert_int_equal(nt_subject_parse2(subj, "natter.room.", t, id), 0);
  assert_string_equal(t, "acme");
  assert_string_equal(id, "lobby");

  assert_true(nt_subject_user(subj, sizeof subj, "t\xc3\xa9", "u-1") > 0);
  assert_int_equal(nt_subject_parse2(subj, "natter.user.", t, id), 0);
  assert_string_equal(t, "t\xc3\xa9");
  assert_string_equal(id, "u-1");

  assert_true(nt_subject_presence(subj, sizeof subj, "acme", "r") > 0);
  assert_int_equal(nt_subject_parse2(subj, "natter.presence.", t, id), 0);
  assert_string_equal(t, "acme");
  assert_string_equal(id, "r");

  /* maximal ids round-trip */
  char longid[NT_ID_MAX + 1];
  memset(longid, 'z', NT_ID_MAX);
  longid[NT_ID_MAX] = '\0';
  assert_true(nt_subject_room(subj, sizeof subj, longid, longid) > 0);
  assert_int_equal(nt_subject_parse2(subj, "natter.room.", t, id), 0);
  assert_string_equal(t, longid);
  assert_string_equal(id, longid);

  /* rejects */
  assert_int_equal(nt_subject_parse2("natter.room.acme.lobby", "natter.user.", t, id), NT_EINVAL);
  assert_int_equal(nt_subject_parse2("natter.room.acme", "natter.room.", t, id), NT_EINVAL);
  assert_int_equal(nt_subject_parse2("natter.room.", "natter.room.", t, id), NT_EINVAL);
  assert_int_equal(nt_subject_parse2("natter.room..lobby", "natter.room.", t, id), NT_EINVAL);
  assert_int_equal(nt_subject_parse2("natter.room.acme.", "natter.room.", t, id), NT_EINVAL);
  assert_int_equal(nt_subject_parse2("natter.room.acme.a.b", "natter.room.", t, id), NT_EINVAL);
  assert_int_equal(nt_subject_parse2("natter.room.*.lobby", "natter.room.", t, id), NT_EINVAL);
  assert_int_equal(nt_subject_parse2("natter.room.acme.>", "natter.room.", t, id), NT_EINVAL);
  assert_int_equal(nt_subject_parse2("natter.roomacme.lobby", "natter.room.", t, id), NT_EINVAL);
  assert_int_equal(nt_subject_parse2("", "natter.room.", t, id), NT_EINVAL);
  /* over-long parts never overflow the NT_ID_MAX+1 out buffers */
  char big[NT_SUBJECT_MAX];
  snprintf(big, sizeof big, "natter.room.%s%s.x", longid, "y");
  assert_int_equal(nt_subject_parse2(big, "natter.room.", t, id), NT_EINVAL);
  snprintf(big, sizeof big, "natter.room.x.%s%s", longid, "y");
  assert_int_equal(nt_subject_parse2(big, "natter.room.", t, id), NT_EINVAL);
}

/* ---------------------------------------------------------------- keys ------- */

static void test_key_tenant(void **state) {
  (void)state;
  char out[NT_SUBJECT_MAX];
  int n = nt_key_tenant(out, sizeof out, NULL, "acme", "room", "lobby");
  assert_string_equal(out, "natter:{acme}:room:lobby");
  assert_int_equal(n, (int)strlen(out));
  n = nt_key_tenant(out, sizeof out, "app:", "acme", "room", "lobby");
  assert_string_equal(out, "app:{acme}:room:lobby");
  assert_int_equal(n, (int)strlen(out));
  /* without id */
  n = nt_key_tenant(out, sizeof out, NULL, "acme", "online", NULL);
  assert_string_equal(out, "natter:{acme}:online");
  assert_int_equal(n, (int)strlen(out));
  /* the hash tag is exactly the tenant: "{" tenant "}" with nothing else braced */
  assert_non_null(strchr(out, '{'));
  assert_int_equal(strchr(out, '}') - strchr(out, '{') - 1, 4);
  /* two keys of one tenant share the same hash tag */
  char a[NT_SUBJECT_MAX], b[NT_SUBJECT_MAX];
  nt_key_tenant(a, sizeof a, NULL, "acme", "room", "x");
  nt_key_tenant(b, sizeof b, NULL, "acme", "conn", "y");
  assert_memory_equal(a, b, strlen("natter:{acme}"));
  /* rejects: braces or colons in any id would break the tag or the separators */
  assert_int_equal(nt_key_tenant(out, sizeof out, NULL, "ac}me", "room", "x"), NT_EINVAL);
  assert_int_equal(nt_key_tenant(out, sizeof out, NULL, "{acme", "room", "x"), NT_EINVAL);
  assert_int_equal(nt_key_tenant(out, sizeof out, NULL, "acme", "ro:om", "x"), NT_EINVAL);
  assert_int_equal(nt_key_tenant(out, sizeof out, NULL, "acme", "room", "x:y"), NT_EINVAL);
  assert_int_equal(nt_key_tenant(out, sizeof out, NULL, "acme", "room", ""), NT_EINVAL);
  assert_int_equal(nt_key_tenant(out, sizeof out, NULL, "", "room", "x"), NT_EINVAL);
  assert_int_equal(nt_key_tenant(out, sizeof out, NULL, "acme", NULL, "x"), NT_EINVAL);
  /* buffer too small */
  assert_int_equal(nt_key_tenant(out, strlen("natter:{acme}:room:lobby"), NULL, "acme", "room",
                                 "lobby"),
                   NT_ETOOLARGE);
  assert_int_equal(nt_key_tenant(out, strlen("natter:{acme}:room:lobby") + 1, NULL, "acme",
                                 "room", "lobby"),
                   (int)strlen("natter:{acme}:room:lobby"));
}

static void test_key_node(void **state) {
  (void)state;
  char out[NT_SUBJECT_MAX];
  int n = nt_key_node(out, sizeof out, NULL, "alive", "n1");
  assert_string_equal(out, "natter:node:alive:n1");
  assert_int_equal(n, (int)strlen(out));
  n = nt_key_node(out, sizeof out, "x:", "conns", "n1");
  assert_string_equal(out, "x:node:conns:n1");
  assert_int_equal(nt_key_node(out, sizeof out, NULL, "alive", "n:1"), NT_EINVAL);
  assert_int_equal(nt_key_node(out, sizeof out, NULL, "alive", ""), NT_EINVAL);
  assert_int_equal(nt_key_node(out, sizeof out, NULL, "al ive", "n1"), NT_EINVAL);
  assert_int_equal(nt_key_node(out, 5, NULL, "alive", "n1"), NT_ETOOLARGE);
}

static void test_key_presence_layout(void **state) {
  (void)state;
  char out[NT_SUBJECT_MAX];
  assert_int_equal(nt_key_tenant_base(out, sizeof out, NULL, "acme"), 14);
  assert_string_equal(out, "natter:{acme}:");
  assert_int_equal(nt_key_tenant_base(out, sizeof out, "p:", "acme"), 9);
  assert_string_equal(out, "p:{acme}:");
  assert_int_equal(nt_key_tenant_base(out, sizeof out, NULL, "ac}me"), NT_EINVAL);
  assert_int_equal(nt_key_tenant_base(out, 14, NULL, "acme"), NT_ETOOLARGE);
  /* a tenant base plus a name is the same key nt_key_tenant builds */
  char k2[NT_SUBJECT_MAX];
  nt_key_tenant_base(out, sizeof out, NULL, "acme");
  nt_key_tenant(k2, sizeof k2, NULL, "acme", NT_KEY_ROOM, "lobby");
  snprintf(out + strlen("natter:{acme}:"), sizeof out - 14, "%s:%s", NT_KEY_ROOM, "lobby");
  assert_string_equal(out, k2);

  assert_true(nt_key_conn(out, sizeof out, NULL, "c123") > 0);
  assert_string_equal(out, "natter:conn:c123");
  assert_int_equal(nt_key_conn(out, sizeof out, NULL, "c:1"), NT_EINVAL);
  assert_true(nt_key_cluster(out, sizeof out, NULL, NT_KEY_LIVE) > 0);
  assert_string_equal(out, "natter:cluster:{nodes}:live");
  assert_int_equal(nt_key_cluster(out, sizeof out, NULL, "a b"), NT_EINVAL);

  assert_int_equal(nt_key_prefix_check(NULL), 0);
  assert_int_equal(nt_key_prefix_check(""), 0);
  assert_int_equal(nt_key_prefix_check("natter:"), 0);
  assert_int_equal(nt_key_prefix_check("app.v2:"), 0);
  assert_int_equal(nt_key_prefix_check("na{t}ter:"), NT_EINVAL);
  assert_int_equal(nt_key_prefix_check("a b"), NT_EINVAL);
  assert_int_equal(nt_key_prefix_check("a\n"), NT_EINVAL);
  assert_int_equal(nt_key_prefix_check("\xc3\xa9"), NT_EINVAL);
  char longp[80];
  memset(longp, 'p', 64);
  longp[64] = '\0';
  assert_int_equal(nt_key_prefix_check(longp), 0);
  longp[64] = 'p';
  longp[65] = '\0';
  assert_int_equal(nt_key_prefix_check(longp), NT_EINVAL);
}

/* Room <-> live subjects: exactly "<prefix><tenant>.<room>" with valid ids, nothing else. */
static void test_live_subjects(void **state) {
  char out[NT_SUBJECT_MAX];
  assert_int_equal(nt_subject_live_of(out, sizeof out, "natter.room.acme.lobby"),
                   (int)strlen("natter.live.room.acme.lobby"));
  assert_string_equal(out, "natter.live.room.acme.lobby");
  assert_int_equal(nt_subject_room_of(out, sizeof out, "natter.live.room.acme.lobby"),
                   (int)strlen("natter.room.acme.lobby"));
  assert_string_equal(out, "natter.room.acme.lobby");
  const char *bad[] = {"natter.room.acme", "natter.room.", "natter.room.acme.lobby.x",
                       "natter.room.*.lobby", "natter.room.acme.>", "natter.room.acme.",
                       "natter.user.acme.bob", "natter.live.room.acme.lobby", NULL};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (nt_subject_live_of(out, sizeof out, bad[i]) != NT_EINVAL)
      fail_msg("live_of accepted \"%s\"", bad[i] ? bad[i] : "(null)");
  assert_int_equal(nt_subject_room_of(out, sizeof out, "natter.live.room.a"), NT_EINVAL);
  assert_int_equal(nt_subject_live_of(out, 10, "natter.room.acme.lobby"), NT_ETOOLARGE);
}


/* The shard choice is part of the deployment: every node must pick the same shard for a
 * tenant, this version and the next. A change of hash fails here. */
static void test_shard_fixed_vector(void **state) {
  (void)state;
  static const struct {
    const char *tenant;
    unsigned of2, of3, of16, room3; /* room "general" among 3 */
  } v[] = {
      {"acme", 0, 0, 15, 2},    {"globex", 1, 1, 1, 0}, {"initech", 0, 2, 10, 2},
      {"umbrella", 0, 0, 8, 2}, {"t1", 1, 1, 6, 0},     {"tenant-42", 0, 2, 8, 1},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    assert_int_equal(nt_shard_of_tenant(v[i].tenant, 2), v[i].of2);
    assert_int_equal(nt_shard_of_tenant(v[i].tenant, 3), v[i].of3);
    assert_int_equal(nt_shard_of_tenant(v[i].tenant, 16), v[i].of16);
    assert_int_equal(nt_shard_of_room(v[i].tenant, "general", 3), v[i].room3);
    char subj[NT_SUBJECT_MAX];
    assert_true(nt_subject_room(subj, sizeof subj, v[i].tenant, "general") > 0);
    assert_int_equal(nt_subject_room_shard(subj, 3), (int)v[i].room3);
  }
  /* one shard, or none: always 0 */
  assert_int_equal(nt_shard_of_tenant("acme", 1), 0);
  assert_int_equal(nt_shard_of_tenant("acme", 0), 0);
  assert_int_equal(nt_shard_of_room("acme", "general", 1), 0);
}

/* Balanced: 30,000 tenants over 2, 3 and 5 shards, each within 5 % of its share; rooms
 * too. Growing 3 -> 4 shards moves about a quarter of the tenants, and only to the new
 * shard (the jump hash's promise; a modulo would move three quarters). */
static void test_shard_balance_and_growth(void **state) {
  (void)state;
  enum { N = 30000 };
  const unsigned ns[] = {2, 3, 5};
  for (size_t c = 0; c < 3; c++) {
    unsigned n = ns[c], count[5] = {0}, rooms[5] = {0};
    for (int i = 0; i < N; i++) {
      char t[32], r[32];
      snprintf(t, sizeof t, "tenant-%d", i);
      snprintf(r, sizeof r, "room-%d", i % 97);
      unsigned k = nt_shard_of_tenant(t, n);
      assert_true(k < n);
      count[k]++;
      rooms[nt_shard_of_room(t, r, n)]++;
    }
    for (unsigned k = 0; k < n; k++) {
      double share = (double)N / n;
      assert_true(count[k] > share * 0.95 && count[k] < share * 1.05);
      assert_true(rooms[k] > share * 0.95 && rooms[k] < share * 1.05);
    }
  }
  int moved = 0;
  for (int i = 0; i < N; i++) {
    char t[32];
    snprintf(t, sizeof t, "tenant-%d", i);
    unsigned a = nt_shard_of_tenant(t, 3), b = nt_shard_of_tenant(t, 4);
    if (a != b) {
      assert_int_equal(b, 3);
      moved++;
    }
  }
  assert_true(moved > N / 4 * 0.9 && moved < N / 4 * 1.1);
}

static void test_hist_subjects(void **state) {
  (void)state;
  char out[NT_SUBJECT_MAX];
  assert_int_equal(nt_subject_hist_of(out, sizeof out, 2, "natter.room.acme.general"),
                   (int)strlen("natter.hist.2.acme.general"));
  assert_string_equal(out, "natter.hist.2.acme.general");
  assert_int_equal(nt_subject_hist_of(out, sizeof out, 0, "natter.user.acme.u"), NT_EINVAL);
  assert_int_equal(nt_subject_hist_of(out, sizeof out, 0, "natter.room.acme"), NT_EINVAL);
  assert_int_equal(nt_subject_hist_of(out, sizeof out, 0, NULL), NT_EINVAL);
  assert_int_equal(nt_subject_hist_of(out, 10, 0, "natter.room.acme.general"), NT_ETOOLARGE);
  assert_true(nt_subject_hist_filter(out, sizeof out, 7) > 0);
  assert_string_equal(out, "natter.hist.7.>");
  assert_int_equal(nt_subject_room_shard("natter.room.a.b.c", 3), NT_EINVAL);
  assert_int_equal(nt_subject_room_shard("natter.live.room.a.b", 3), NT_EINVAL);
  assert_int_equal(nt_subject_room_shard(NULL, 3), NT_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_id_valid),
      cmocka_unit_test(test_id_length),
      cmocka_unit_test(test_id_rejects_specials),
      cmocka_unit_test(test_id_rejects_invalid_utf8),
      cmocka_unit_test(test_id_rejects_unicode_space_and_format),
      cmocka_unit_test(test_subject_room),
      cmocka_unit_test(test_subject_user),
      cmocka_unit_test(test_subject_presence),
      cmocka_unit_test(test_subject_event),
      cmocka_unit_test(test_subject_node),
      cmocka_unit_test(test_subject_route),
      cmocka_unit_test(test_subject_parse2),
      cmocka_unit_test(test_key_tenant),
      cmocka_unit_test(test_key_node),
      cmocka_unit_test(test_key_presence_layout),
      cmocka_unit_test(test_live_subjects),
      cmocka_unit_test(test_shard_fixed_vector),
      cmocka_unit_test(test_shard_balance_and_growth),
      cmocka_unit_test(test_hist_subjects),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
