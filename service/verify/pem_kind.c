/*
 * The PEM framing rule of credentials (verify_internal.h), in a file of its
 * own like rsa_exponent.c: the registry checks credentials and CA
 * certificates by the same rule, and its shared library carries a private
 * copy rather than the verifier exporting a name outside lk_verify.h.
 */
#include <string.h>

#include "verify_internal.h"

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * The input must be exactly one PEM object, with only white space around
 * it: a file with a certificate and then a key, or text before the object,
 * is refused rather than silently half-used. Returns the label kind:
 * 1 = PUBLIC KEY, 2 = CERTIFICATE, 0 = anything else.
 */
int lk_verify__pem_kind(const char *pem, size_t len)
{
    static const char begin_pub[] = "-----BEGIN PUBLIC KEY-----";
    static const char begin_crt[] = "-----BEGIN CERTIFICATE-----";
    static const char end_pub[] = "-----END PUBLIC KEY-----";
    static const char end_crt[] = "-----END CERTIFICATE-----";
    const char *end_label, *p = pem, *stop = pem + len, *last;
    size_t end_len;
    int kind;

    while (p < stop && is_space(*p))
        p++;
    while (stop > p && is_space(stop[-1]))
        stop--;
    if ((size_t)(stop - p) > sizeof begin_pub - 1 && memcmp(p, begin_pub, sizeof begin_pub - 1) == 0) {
        kind = 1;
        end_label = end_pub;
        end_len = sizeof end_pub - 1;
    } else if ((size_t)(stop - p) > sizeof begin_crt - 1 &&
               memcmp(p, begin_crt, sizeof begin_crt - 1) == 0) {
        kind = 2;
        end_label = end_crt;
        end_len = sizeof end_crt - 1;
    } else {
        return 0;
    }
    if ((size_t)(stop - p) < end_len)
        return 0;
    last = stop - end_len;
    if (memcmp(last, end_label, end_len) != 0)
        return 0;
    /* No second BEGIN or END between the first line and the last. */
    {
        const char *q = p + 5;
        while (q < last && (q = memchr(q, '-', (size_t)(last - q))) != NULL) {
            if ((size_t)(last - q) >= 10 && memcmp(q, "-----BEGIN", 10) == 0)
                return 0;
            if ((size_t)(last - q) >= 8 && memcmp(q, "-----END", 8) == 0)
                return 0;
            q++;
        }
    }
    return kind;
}
