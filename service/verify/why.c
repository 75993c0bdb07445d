/*
 * The one "say why, return the error" helper of the service side
 * (verify_internal.h). In a file of its own, like rsa_exponent.c: the
 * registry's shared library carries a private copy rather than the
 * verifier exporting a name outside lk_verify.h.
 */
#include <stdarg.h>
#include <stdio.h>

#include "verify_internal.h"

lk_err lk_verify__why(char *why, size_t why_size, lk_err err, const char *fmt, ...)
{
    va_list ap;
    if (why != NULL && why_size > 0) {
        va_start(ap, fmt);
        vsnprintf(why, why_size, fmt, ap);
        va_end(ap);
    }
    return err;
}
