/*
 * test_metrics_shm.c — the reader's side of the plugin's metrics file
 * (service/common/lk_metrics_shm.h): the header's checks before anything
 * else is read, strings kept within their arrays, and refusal entries
 * read only when their sequence number says they are whole.
 */
#include "lk_test.h"

#include <stdlib.h>
#include <string.h>

#include "service/common/lk_metrics_shm.h"

static struct lk_mshm *good(void)
{
    struct lk_mshm *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->magic = LK_MSHM_MAGIC;
    m->version = LK_MSHM_VERSION;
    m->size = (uint32_t)sizeof *m;
    m->registries = LK_MSHM_REGISTRIES;
    m->ring = LK_MSHM_RING;
    return m;
}

static void test_header_checks(void **state)
{
    struct lk_mshm *m = good();
    char why[200];
    (void)state;

    assert_int_equal(lk_mshm_check(m, sizeof *m, why, sizeof why), 0);
    /* too short to hold the header, or no mapping at all */
    assert_int_equal(lk_mshm_check(m, 15, why, sizeof why), -1);
    assert_non_null(strstr(why, "too short"));
    assert_int_equal(lk_mshm_check(NULL, 0, why, sizeof why), -1);
    /* shorter than the struct: the header's size is not enough */
    assert_int_equal(lk_mshm_check(m, sizeof *m - 1, why, sizeof why), -1);
    assert_non_null(strstr(why, "size"));
    m->magic ^= 1;
    assert_int_equal(lk_mshm_check(m, sizeof *m, why, sizeof why), -1);
    assert_non_null(strstr(why, "magic"));
    m->magic ^= 1;
    m->version = 2;
    assert_int_equal(lk_mshm_check(m, sizeof *m, why, sizeof why), -1);
    assert_non_null(strstr(why, "version 2"));
    m->version = LK_MSHM_VERSION;
    m->size = 64;
    assert_int_equal(lk_mshm_check(m, sizeof *m, why, sizeof why), -1);
    m->size = (uint32_t)sizeof *m;
    m->ring = 8;
    assert_int_equal(lk_mshm_check(m, sizeof *m, why, sizeof why), -1);
    assert_non_null(strstr(why, "tables"));
    free(m);
}

static void test_strings_stay_within_their_arrays(void **state)
{
    char field[8], out[8];
    (void)state;

    memset(field, 'a', sizeof field); /* no NUL at all */
    assert_int_equal(lk_mshm_str(field, sizeof field, out), 7);
    assert_string_equal(out, "aaaaaaa");
    memcpy(field, "ab\ncd", 6);       /* a control byte ends it */
    assert_int_equal(lk_mshm_str(field, sizeof field, out), 2);
    assert_string_equal(out, "ab");
    field[0] = (char)0xC3;            /* so does anything past ASCII */
    assert_int_equal(lk_mshm_str(field, sizeof field, out), 0);
    assert_string_equal(out, "");
}

static void test_refusal_entries_by_sequence(void **state)
{
    struct lk_mshm *m = good();
    struct lk_mshm_refusal out;
    struct lk_mshm_refusal *e = &m->refusal[5];
    (void)state;

    /* empty */
    assert_int_equal(lk_mshm_refusal_read(m, 5, &out), -1);
    e->time = 1700000000;
    e->reason = LK_MSHM_R_BLOCKED;
    memset(e->device, 'd', sizeof e->device); /* unterminated: cut at its array's end */
    strcpy(e->detail, "the device is blocked");
    atomic_store(&e->seq, 2 * 5 + 1);         /* being written */
    assert_int_equal(lk_mshm_refusal_read(m, 5, &out), -1);
    atomic_store(&e->seq, 2 * 5 + 2);         /* written */
    assert_int_equal(lk_mshm_refusal_read(m, 5, &out), 0);
    assert_int_equal(out.time, 1700000000);
    assert_string_equal(lk_mshm_reason_name(out.reason), "blocked");
    assert_int_equal(strlen(out.device), sizeof out.device - 1);
    assert_string_equal(out.detail, "the device is blocked");
    /* the same slot, one lap later: entry 5 is gone */
    assert_int_equal(lk_mshm_refusal_read(m, 5 + LK_MSHM_RING, &out), -1);
    atomic_store(&e->seq, 2 * (5 + LK_MSHM_RING) + 2);
    assert_int_equal(lk_mshm_refusal_read(m, 5, &out), -1);
    assert_int_equal(lk_mshm_refusal_read(m, 5 + LK_MSHM_RING, &out), 0);
    /* a reason from a newer writer is named, not indexed past the table */
    assert_string_equal(lk_mshm_reason_name(LK_MSHM_REASONS + 7), "unknown");
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_checks),
        cmocka_unit_test(test_strings_stay_within_their_arrays),
        cmocka_unit_test(test_refusal_entries_by_sequence),
    };
    return cmocka_run_group_tests_name("metrics_shm", tests, NULL, NULL);
}
