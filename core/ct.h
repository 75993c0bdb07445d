/*
 * ct.h — declassification points of the core's constant-time code: where a
 * value computed from secret bytes becomes public (the result of a check,
 * or a fact that the public length already tells), so that code may branch
 * on it. tests/failure/ct_check.c compiles the core with LK_CT_VALIDATE and
 * runs under valgrind with the secrets marked undefined: every other branch
 * or index on secret data is reported there. In the product these are
 * nothing.
 */
#ifndef LK_CORE_CT_H
#define LK_CORE_CT_H

#ifdef LK_CT_VALIDATE
#include <valgrind/memcheck.h>
#define LK_DECLASSIFY(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#else
#define LK_DECLASSIFY(p, n) ((void)(p), (void)(n))
#endif

#endif /* LK_CORE_CT_H */
