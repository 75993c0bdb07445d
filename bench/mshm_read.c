/*
 * mshm_read FILE: the plugin's metrics file (plugin_opt_metrics_file,
 * service/common/lk_metrics_shm.h) read once, for bench/storm.sh. Prints one
 * line of five numbers:
 *
 *     CACHE_HITS CACHE_MISSES CONNECTIONS CONNECTS REFUSALS
 *
 * cache_misses counts the signature checks (verified-token cache misses);
 * CONNECTIONS, the device connections open now, CONNECTS the device
 * connects accepted and REFUSALS the connects refused, each summed over
 * every registry. Exits 1 (and says why) when the file is missing or is not
 * a metrics file of this version.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../service/common/lk_metrics_shm.h"

static uint64_t ld(lk_mshm_u64 *x)
{
    return atomic_load_explicit(x, memory_order_relaxed);
}

int main(int argc, char **argv)
{
    struct stat st;
    struct lk_mshm *m;
    uint64_t conns = 0, connects = 0, refusals = 0;
    char why[200];
    unsigned i, r;
    int fd;

    if (argc != 2) {
        fprintf(stderr, "usage: mshm_read METRICS_FILE\n");
        return 2;
    }
    fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(argv[1]);
        return 1;
    }
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        perror(argv[1]);
        return 1;
    }
    if (lk_mshm_check(m, (size_t)st.st_size, why, sizeof why) != 0) {
        fprintf(stderr, "%s: %s\n", argv[1], why);
        return 1;
    }
    for (i = 0; i < LK_MSHM_SLOTS; i++) {
        conns += ld(&m->reg[i].connections);
        connects += ld(&m->reg[i].connects);
        for (r = 0; r < LK_MSHM_REASONS; r++)
            refusals += ld(&m->reg[i].refusals[r]);
    }
    printf("%llu %llu %llu %llu %llu\n", (unsigned long long)ld(&m->cache_hits),
           (unsigned long long)ld(&m->cache_misses), (unsigned long long)conns,
           (unsigned long long)connects, (unsigned long long)refusals);
    munmap(m, (size_t)st.st_size);
    return 0;
}
