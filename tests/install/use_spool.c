/*
 * use_spool.c — a program of a latchkey user, built by tests/install/run.sh
 * against an installed tree only (`pkg-config latchkey-spool`), that calls
 * every function liblatchkey-spool's header declares, on a spool of its own.
 *
 *   use_spool FILE      (a path where no file exists yet)
 */
#include <stdio.h>
#include <string.h>

#include <latchkey/lk_spool.h>

static int failures;
#define CHECK(cond)                                                      \
    do {                                                                 \
        if (!(cond)) {                                                   \
            fprintf(stderr, "use_spool.c:%d: %s\n", __LINE__, #cond);    \
            failures++;                                                  \
        }                                                                \
    } while (0)

static int count_sub(void *arg, const char *sub, const lk_spool_stats *s)
{
    (void)sub;
    (void)s;
    ++*(int *)arg;
    return 0;
}

int main(int argc, char **argv)
{
    const char *subs[] = {"projects/p/subscriptions/a", "projects/p/subscriptions/b"};
    const char *dl[] = {"projects/p/subscriptions/dead"};
    const uint8_t payload[] = "hello";
    lk_spool_msg m = {"projects/p/topics/t", "42", payload, 5,
                      "{\"deviceId\":\"d\",\"deviceNumId\":\"42\"}", 1700000000000};
    lk_spool_delivery d[4];
    lk_spool_stats st;
    lk_spool *sp = NULL, *ro = NULL;
    uint64_t id = 0, n64 = 0;
    uint32_t full = 0;
    size_t n = 0;
    char why[256];
    int nsubs = 0;

    if (argc != 2)
        return 2;
    CHECK(lk_spool_open(argv[1], 0, 1000, &sp, why, sizeof why) == LK_ERR_FILE_MISSING);
    CHECK(lk_spool_open(argv[1], LK_SPOOL_CREATE, 1000, &sp, why, sizeof why) == LK_OK);
    if (sp == NULL)
        return 1;
    CHECK(lk_spool_enqueue(sp, &m, subs, 2, NULL, &id, &full, why, sizeof why) == LK_OK);
    CHECK(id > 0 && full == 0);
    CHECK(lk_spool_next(sp, subs[0], 1700000000000, NULL, 0, d, 4, &n, why, sizeof why) == LK_OK);
    CHECK(n == 1 && d[0].message_id == id && d[0].data_len == 5 && memcmp(d[0].data, "hello", 5) == 0);
    if (n > 0)
        lk_spool_delivery_free(&d[0]);
    CHECK(lk_spool_ack(sp, subs[0], &id, 1, why, sizeof why) == LK_OK);
    CHECK(lk_spool_retry(sp, subs[1], id, 0, why, sizeof why) == LK_OK);
    CHECK(lk_spool_dead_letter(sp, subs[1], id, dl, 1, NULL, why, sizeof why) == LK_OK);
    CHECK(lk_spool_expire(sp, dl[0], 1800000000000, &n64, why, sizeof why) == LK_OK && n64 == 1);
    CHECK(lk_spool_stats_get(sp, subs[0], &st, why, sizeof why) == LK_OK);
    CHECK(st.enqueued == 1 && st.acked == 1 && st.depth == 0);
    CHECK(lk_spool_forget(sp, subs[0], why, sizeof why) == LK_OK);
    CHECK(lk_spool_open(argv[1], LK_SPOOL_READONLY, 1000, &ro, why, sizeof why) == LK_OK);
    CHECK(lk_spool_stats_list(ro, count_sub, &nsubs, why, sizeof why) == LK_OK);
    CHECK(nsubs == 2); /* b and dead */
    lk_spool_close(ro);
    lk_spool_close(sp);
    /* backup, restore, schema status */
    {
        char bk[4200], back[4200];
        int64_t v = 0, fv = 0, pv = 0;
        snprintf(bk, sizeof bk, "%s.bk", argv[1]);
        snprintf(back, sizeof back, "%s.restored", argv[1]);
        CHECK(lk_spool_backup(argv[1], bk, &v, why, sizeof why) == LK_OK && v == 1);
        CHECK(lk_spool_backup(argv[1], bk, NULL, why, sizeof why) == LK_ERR_REG_EXISTS);
        CHECK(lk_spool_restore(bk, back, 0, &v, why, sizeof why) == LK_OK);
        CHECK(lk_spool_restore(bk, back, LK_SPOOL_RESTORE_FORCE, NULL, why, sizeof why) == LK_OK);
        CHECK(lk_spool_schema_status(back, &fv, &pv, why, sizeof why) == LK_OK && fv == pv);
    }
    if (failures == 0)
        printf("use_spool: every function of liblatchkey-spool works\n");
    return failures == 0 ? 0 : 1;
}
