/* The registry unit tests' fixture and assertions, shared so that every
 * suite opens, clocks and checks its database the same way. */
#ifndef LK_TEST_REG_H
#define LK_TEST_REG_H

#include <string.h>

#include "lk_test.h"
#include "latchkey/lk_error.h"

/* A fresh database file in its own temporary directory, opened with
 * LK_REG_CREATE, its clock fixed at now (first LK_TEST_T0; a test moves it).
 * For cmocka_unit_test_setup_teardown. */
#define LK_TEST_T0 1700000000LL
struct lk_registry;
struct lk_test_reg {
    char *dir;
    char path[4096];
    struct lk_registry *reg;
    int64_t now;
};
int lk_test_reg_setup(void **state);
int lk_test_reg_teardown(void **state);

/* Another handle on f's file, opened with flags (lk_registry_open) and
 * clocked by f->now; the caller closes it. */
struct lk_registry *lk_test_reg_open(struct lk_test_reg *f, unsigned flags);

/* The clock the fixture installs: *(int64_t *)arg. */
int64_t lk_test_reg_clock(void *arg);

/* REFUSE(code, text, call): call must fail with code and a why containing
 * text; OK(call): call must succeed (its why printed if not). The call
 * passes W as its why and why_size. A suite that defines LK_TEST_NO_LEAK
 * (a secret it uses) before including this also checks that no why
 * contains it. */
#ifndef LK_TEST_NO_LEAK
#define LK_TEST_NO_LEAK NULL
#endif
#define W why_, sizeof why_
#define REFUSE(code, text, call)                                                             \
    do {                                                                                     \
        char why_[512] = "";                                                                 \
        const char *leak_ = LK_TEST_NO_LEAK;                                                 \
        lk_err e_ = (call);                                                                  \
        if (e_ != (code) || strstr(why_, (text)) == NULL)                                    \
            print_message("%s:%d: got %s: \"%s\"; want %s with \"%s\"\n", __FILE__, __LINE__, \
                          lk_errname(e_), why_, lk_errname(code), (text));                   \
        assert_int_equal(e_, (code));                                                        \
        assert_non_null(strstr(why_, (text)));                                               \
        if (leak_ != NULL)                                                                   \
            assert_null(strstr(why_, leak_));                                                \
    } while (0)
#define OK(call)                                                                             \
    do {                                                                                     \
        char why_[512] = "";                                                                 \
        lk_err e_ = (call);                                                                  \
        if (e_ != LK_OK)                                                                     \
            print_message("%s:%d: %s: %s\n", __FILE__, __LINE__, lk_errname(e_), why_);      \
        assert_int_equal(e_, LK_OK);                                                         \
    } while (0)

#endif
