/*
 * api_audit.c — GET /v1/projects/P/auditRecords?pageSize=N&pageToken=T
 * (admin of P; docs/daemon.md, "Audit records"): the project's audit
 * record, newest first, {"auditRecords": [{"id", "time", "actor", "via",
 * "action", "resource", "detail", "outcome"}], "nextPageToken"}. pageSize
 * 1..1000 (default 100); the page token is the last record's id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_reg_audit.h"
#include "daemon.h"

struct page {
    json_t *list;
    int64_t last;
    int failed;
};

static int add(void *arg, const lk_reg_audit_record *r)
{
    struct page *p = arg;
    json_t *o = json_pack("{s:s,s:o,s:s,s:s,s:s,s:s,s:s,s:s}", "id", "", "time", lkd_jtime(r->time), "actor",
                          r->actor, "via", r->via, "action", r->action, "resource", r->resource, "detail",
                          r->detail, "outcome", r->outcome);
    if (o == NULL || json_object_set_new(o, "id", lkd_ji64(r->id)) != 0 || json_array_append_new(p->list, o) != 0) {
        p->failed = 1;
        return 1;
    }
    p->last = r->id;
    return 0;
}

void lkd_api_audit(struct lkd_call *c)
{
    const char *project = c->seg[1];
    int64_t size;
    if (c->nseg != 3 || c->verb != NULL || c->method != EVHTTP_REQ_GET) {
        lkd_reply_error(c, LKD_NOT_FOUND, "auditRecords: GET /v1/projects/P/auditRecords only");
        return;
    }
    if (lkd_require(c, project, LKD_ROLE_ADMIN) != 0 ||
        lkd_query_int(c, "pageSize", 1, 1000, 100, &size) != 0)
        return;
    lk_reg_audit_query q = {0};
    const char *tok = lkd_query(c, "pageToken");
    if (tok != NULL && tok[0] != '\0') {
        char *end;
        long long v = strtoll(tok, &end, 10);
        if (*end != '\0' || v <= 0 || tok[0] == '+' || tok[0] == '-') {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "pageToken is not one this API gave");
            return;
        }
        q.cursor = v;
    }
    q.project = project;
    q.limit = (unsigned)size + 1; /* one more: is there a next page? */
    struct page p = {json_array(), 0, 0};
    char why[256] = "";
    lk_err err = p.list ? lk_registry_audit_list(c->d->reg, &q, add, &p, why, sizeof why) : LK_ERR_NOMEM;
    if (err == LK_OK && p.failed)
        err = LK_ERR_NOMEM;
    if (err != LK_OK) {
        json_decref(p.list);
        lkd_reply_lk(c, err, why);
        return;
    }
    json_t *j = json_object();
    if ((int64_t)json_array_size(p.list) > size) {
        json_array_remove(p.list, (size_t)size);
        json_t *lastrec = json_array_get(p.list, (size_t)size - 1);
        json_t *id = json_object_get(lastrec, "id");
        json_object_set_new(j, "nextPageToken", json_string(json_string_value(id)));
    }
    json_object_set_new(j, "auditRecords", p.list);
    lkd_reply_json(c, 200, j);
}
