/*
 * The rule for RSA public exponents (verify_internal.h), in a file of its
 * own: the registry applies it to CA certificates too, and its shared
 * library (liblatchkey-registry) carries a private copy of this one
 * function rather than the verifier exporting a name outside lk_verify.h.
 */
#include <stdint.h>
#include <stdio.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "verify_internal.h"

int lk_verify__rsa_exponent_ok(const EVP_PKEY *pk, char *why, size_t why_size)
{
    BIGNUM *e = NULL;
    int bits, ok = 0;
    char d[64];

    if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e)) {
        snprintf(d, sizeof d, "no readable public exponent");
    } else if ((bits = BN_num_bits(e)) > (int)LK_CRED_RSA_E_MAX_BITS) {
        /* A verification costs a modular multiplication per bit of e. */
        snprintf(d, sizeof d, "public exponent of %d bits; at most %u", bits,
                 LK_CRED_RSA_E_MAX_BITS);
    } else if (!BN_is_odd(e) || BN_is_one(e)) {
        unsigned char b[8];
        uint64_t v = 0;
        int i;
        /* At most 64 bits here: print it whole, whatever BN_ULONG is. */
        if (BN_bn2binpad(e, b, sizeof b) == (int)sizeof b)
            for (i = 0; i < 8; i++)
                v = (v << 8) | b[i];
        snprintf(d, sizeof d, "public exponent %llu", (unsigned long long)v);
    } else {
        ok = 1;
        d[0] = '\0';
    }
    BN_free(e);
    if (why != NULL && why_size > 0)
        snprintf(why, why_size, "%s", d);
    return ok;
}
