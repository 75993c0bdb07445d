/*
 * The baseline of `latchkey provision`'s figure (bench/provision.sh): the
 * token's own key generations per second, one handle opened once, each key
 * generated under its label (lk_se_generate returns its public key) -- the
 * part of provisioning a device that belongs to the token, without the
 * certificate or the manifest.
 *
 *   bench_p11gen 'pkcs11:token=T?module-path=M&pin-value=P' N  →  keys per second
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "latchkey/lk_pkcs11.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    char detail[1200], ref[64];
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len;
    lk_pkcs11 *p11 = NULL;
    lk_se se;
    long n, i;
    double t0;

    if (argc != 3 || (n = atol(argv[2])) <= 0) {
        fprintf(stderr, "usage: bench_p11gen TOKEN-URI N\n");
        return 2;
    }
    if (lk_pkcs11_open(argv[1], NULL, NULL, &p11, detail, sizeof detail) != LK_OK) {
        fprintf(stderr, "bench_p11gen: %s\n", detail);
        return 1;
    }
    se = lk_pkcs11_se(p11);
    t0 = now_s();
    for (i = 0; i < n; i++) {
        snprintf(ref, sizeof ref, "pkcs11:object=base-%ld", i);
        if (lk_se_generate(&se, ref, LK_ALG_ES256, 0, pub, sizeof pub, &pub_len) != LK_OK) {
            fprintf(stderr, "bench_p11gen: key %ld: %s\n", i, lk_pkcs11_last_error(p11));
            lk_pkcs11_close(p11);
            return 1;
        }
    }
    printf("%.1f\n", (double)n / (now_s() - t0));
    lk_pkcs11_close(p11);
    return 0;
}
