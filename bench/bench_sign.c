/*
 * Token-signing throughput through the software key store, the key loaded
 * once: the cost a device (or the fleet simulator) pays per token.
 *
 *   bench_sign ES256|RS256 SECONDS  →  prints tokens per second
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "latchkey/lk_jwt.h"
#include "latchkey/lk_softstore.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/lkbench-XXXXXX", path[64], token[2048];
    lk_softstore *s = NULL;
    lk_se se;
    lk_alg alg;
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len, token_len;
    double seconds, t0, t;
    long n = 0;
    int rc = 1;

    if (argc != 3 || (alg = lk_alg_from_name(argv[1], strlen(argv[1]))) == LK_ALG_NONE) {
        fprintf(stderr, "usage: bench_sign ES256|RS256 SECONDS\n");
        return 2;
    }
    seconds = atof(argv[2]);
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(path, sizeof path, "%s/store.lks", dir);
    if (lk_softstore_open(path, LK_SOFTSTORE_CREATE, &s) != LK_OK)
        goto exit;
    se = lk_softstore_se(s);
    if (lk_se_generate(&se, "bench", alg, 0, pub, sizeof pub, &pub_len) != LK_OK)
        goto exit;
    /* Warm up: the first signature decodes the key and makes the context. */
    if (lk_jwt_iotcore(&se, "bench", alg, "bench-project", 13, 1700000000, 1700003600,
                       token, sizeof token, &token_len) != LK_OK)
        goto exit;
    t0 = now_s();
    do {
        int i;
        for (i = 0; i < 64; i++) {
            if (lk_jwt_iotcore(&se, "bench", alg, "bench-project", 13, 1700000000 + n,
                               1700003600 + n, token, sizeof token, &token_len) != LK_OK)
                goto exit;
            n++;
        }
        t = now_s();
    } while (t - t0 < seconds);
    printf("%.0f\n", (double)n / (t - t0));
    rc = 0;
exit:
    if (rc != 0)
        fprintf(stderr, "bench_sign: failed\n");
    lk_softstore_close(s);
    snprintf(path, sizeof path, "%s/store.lks", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/store.lks.lock", dir);
    unlink(path);
    rmdir(dir);
    return rc;
}
