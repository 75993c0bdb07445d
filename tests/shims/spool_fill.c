/*
 * spool_fill.c — test-only: enqueue messages into a delivery spool through
 * lk_spool_enqueue, as the broker plugin does (tests/integration/test_push.py
 * fills the spool without a broker). Never installed.
 *
 *   lk_spool_fill SPOOL [MAX_MESSAGES] < lines
 *
 * MAX_MESSAGES: each subscription's bound (lk_spool_limits; default the
 * spool's).
 * Each line: SUBS<TAB>TOPIC<TAB>KEY<TAB>PUBLISH_MS<TAB>ATTRS_JSON<TAB>DATA_HEX,
 * SUBS comma-separated. Prints each message's id, one a line. Exit 0, or 1
 * with the reason on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_spool.h"

int main(int argc, char **argv)
{
    char why[512] = "";
    lk_spool *sp = NULL;
    lk_spool_limits lim = {0, 0};
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: lk_spool_fill SPOOL [MAX_MESSAGES] < lines\n");
        return 2;
    }
    if (lk_spool_open(argv[1], LK_SPOOL_CREATE, 5000, &sp, why, sizeof why) != LK_OK) {
        fprintf(stderr, "open: %s\n", why);
        return 1;
    }
    if (argc == 3)
        lim.max_messages = strtoull(argv[2], NULL, 10);
    static char line[1 << 20];
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *f[6];
        char *p = line;
        for (int i = 0; i < 6; i++) {
            f[i] = p;
            p = strchr(p, '\t');
            if (p == NULL && i < 5) {
                fprintf(stderr, "a line needs 6 fields\n");
                return 1;
            }
            if (p)
                *p++ = '\0';
        }
        const char *subs[32];
        size_t nsubs = 0;
        for (char *s = strtok(f[0], ","); s != NULL && nsubs < 32; s = strtok(NULL, ","))
            subs[nsubs++] = s;
        size_t hl = strlen(f[5]);
        uint8_t *data = malloc(hl / 2 + 1);
        for (size_t i = 0; i + 1 < hl; i += 2) {
            unsigned v;
            sscanf(f[5] + i, "%2x", &v);
            data[i / 2] = (uint8_t)v;
        }
        lk_spool_msg m = {f[1], f[2], data, hl / 2, f[4], strtoll(f[3], NULL, 10)};
        uint64_t id = 0;
        uint32_t full = 0;
        lk_err err = lk_spool_enqueue(sp, &m, subs, nsubs, &lim, &id, &full, why, sizeof why);
        free(data);
        if (err != LK_OK) {
            fprintf(stderr, "enqueue: %s\n", why);
            return 1;
        }
        printf("%llu\n", (unsigned long long)id);
    }
    lk_spool_close(sp);
    return 0;
}
