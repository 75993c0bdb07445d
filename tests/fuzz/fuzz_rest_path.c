/*
 * fuzz_rest_path — latchkeyd's readers of a request's path and query
 * (service/daemon/path.c: lkd_split_path, lkd_name; device_body.c:
 * lkd_num_id; pjson.c: lkd_mask, lkd_query_int), on any request target a
 * client could send.
 *
 * Input: the request target after "/v1/", up to the first NUL; a '?' starts
 * the query, which libevent parses as http.c does (evhttp_parse_query_str).
 * Invariants (abort on violation):
 *  - a split that succeeds gives one segment per '/'-separated piece, each
 *    non-empty, without '/' or NUL, not "." or "..", at most LKD_SEG_MAX,
 *    and a ":verb" only with a non-empty name before it and verb after;
 *    a split that fails says why;
 *  - a name accepted from the segments has a valid project, location and
 *    registry id, pointing at segments 1, 3 and 5;
 *  - lkd_num_id accepts exactly 1 to 20 decimal digits, with their value
 *    (UINT64_MAX when over it: no device has that numId);
 *  - an updateMask read has at most the cap of field paths, each non-empty,
 *    shorter than 48 bytes and of letters, digits, '_' and '.' only;
 *    a pageSize read lies within its bounds.
 * A refusal frees the call as the daemon's reply does, so a leak on a
 * refusal path is found. The log is silenced.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "../../service/daemon/daemon.h"
#include "latchkey/lk_iotcore.h"
#include "fuzz_common.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct lkd_call *call(const char *path, const char *query)
{
    struct lkd_call *c = calloc(1, sizeof *c);
    CHECK(c != NULL);
    c->path = strdup(path);
    CHECK(c->path != NULL);
    TAILQ_INIT(&c->query);
    if (query != NULL && evhttp_parse_query_str(query, &c->query) != 0)
        evhttp_clear_headers(&c->query);
    else
        c->query_ok = 1;
    return c;
}

static size_t pieces(const char *p)
{
    size_t n = *p != '\0';
    for (; *p; p++)
        n += *p == '/';
    return n;
}

static void check_split(struct lkd_call *c, const char *raw)
{
    for (unsigned i = 0; i < c->nseg; i++) {
        const char *s = c->seg[i];
        CHECK(s != NULL && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0);
        CHECK(s[0] != '\0');
    }
    CHECK(c->nseg == pieces(raw) && c->nseg <= LKD_SEG_MAX);
    if (c->verb != NULL) {
        CHECK(c->nseg > 0 && c->verb[0] != '\0' && c->seg[c->nseg - 1][0] != '\0');
        CHECK(c->verb > c->seg[c->nseg - 1]);
    }
}

static void check_name(const char *raw, const char *query)
{
    static const unsigned used[] = {2, 4, 6};
    for (unsigned k = 0; k < 3; k++) {
        struct lkd_call *c = call(raw, query);
        const char *msg = NULL;
        if (lkd_split_path(c, raw, &msg) != 0 || c->nseg < used[k]) {
            lkd_call_free(c);
            return;
        }
        lk_reg_name n;
        if (lkd_name(c, &n, used[k]) != 0)
            continue; /* the reply freed the call */
        CHECK(n.project == c->seg[1] && lk_project_valid(n.project, strlen(n.project)));
        CHECK(used[k] < 4 || (n.location == c->seg[3] && lk_location_valid(n.location, strlen(n.location))));
        CHECK(used[k] < 6 || (n.registry == c->seg[5] && lk_id_valid(n.registry, strlen(n.registry))));
        lkd_call_free(c);
    }
}

static void check_num_id(const char *s)
{
    uint64_t v = 0, want = 0;
    size_t len = strlen(s);
    int digits = len > 0 && len <= 20, over = 0;
    for (size_t i = 0; digits && i < len; i++) {
        if (!isdigit((unsigned char)s[i])) {
            digits = 0;
            break;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (want > (UINT64_MAX - d) / 10)
            over = 1;
        else
            want = want * 10 + d;
    }
    CHECK(lkd_num_id(s, &v) == digits);
    if (digits)
        CHECK(v == (over ? UINT64_MAX : want));
}

static void check_query(const char *raw, const char *query)
{
    char mask[8][48];
    struct lkd_call *c = call(raw, query);
    int n = lkd_mask(c, "updateMask", mask, 8);
    if (n < 0) {
        c = call(raw, query);
    } else {
        CHECK(n <= 8);
        for (int i = 0; i < n; i++) {
            size_t l = strnlen(mask[i], sizeof mask[i]);
            CHECK(l > 0 && l < 48);
            for (size_t j = 0; j < l; j++)
                CHECK(isalnum((unsigned char)mask[i][j]) || mask[i][j] == '_' || mask[i][j] == '.');
        }
    }
    int64_t size = -1;
    if (lkd_query_int(c, "pageSize", 0, 1000, 50, &size) != 0)
        return; /* freed */
    CHECK(size >= 0 && size <= 1000);
    lkd_call_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lkd_log_quiet = 1;
    char *in = malloc(size + 1);
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    char *query = strchr(in, '?');
    if (query != NULL)
        *query++ = '\0';
    const char *raw = in;

    struct lkd_call *c = call(raw, query);
    const char *msg = NULL;
    if (lkd_split_path(c, raw, &msg) == 0) {
        check_split(c, raw);
        for (unsigned i = 0; i < c->nseg; i++)
            check_num_id(c->seg[i]);
        if (c->verb != NULL)
            check_num_id(c->verb);
    } else {
        CHECK(msg != NULL && msg[0] != '\0');
    }
    lkd_call_free(c);
    check_num_id(raw);
    check_name(raw, query);
    check_query(raw, query);
    free(in);
    return 0;
}
