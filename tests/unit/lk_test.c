#include "lk_test_reg.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "latchkey/lk_registry.h"
#include "service/registry/internal.h"

const char *lk_test_vector_path(const char *file)
{
    static char path[4096];
    /* Only the repository's own copy: a missing file must fail the test,
     * never send it looking elsewhere. */
    snprintf(path, sizeof path, "%s/%s", LK_TEST_VECTORS_DIR, file);
    return path;
}

char *lk_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/lktest-XXXXXX", base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void lk_test_rmtree(const char *path)
{
    if (path != NULL)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *lk_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf != NULL && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (nb == NULL) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf == NULL)
        return NULL;
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

uint64_t lk_test_rand64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void lk_test_rand_bytes(uint64_t *state, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)lk_test_rand64(state);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int lk_test_hex2bin(const char *hex, uint8_t *out, size_t out_size)
{
    if (strlen(hex) != 2 * out_size)
        return -1;
    for (size_t i = 0; i < out_size; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

char *lk_test_b64url_ref_encode(const uint8_t *in, size_t len)
{
    char *out = malloc(4 * (len / 3 + 1) + 1);
    if (out == NULL)
        return NULL;
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (int i = 0; i < n; i++) {
        if (out[i] == '+') out[i] = '-';
        else if (out[i] == '/') out[i] = '_';
    }
    return out;
}

uint8_t *lk_test_b64url_ref_decode(const char *in, size_t len, size_t *out_len)
{
    if (len % 4 == 1)
        return NULL;
    size_t plen = (len + 3) / 4 * 4;
    char *tmp = malloc(plen + 1);
    uint8_t *out = malloc(plen / 4 * 3 + 1);
    if (tmp == NULL || out == NULL) {
        free(tmp);
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '-') c = '+';
        else if (c == '_') c = '/';
        else if (c == '+' || c == '/' || c == '=') c = '!'; /* not base64url */
        tmp[i] = c;
    }
    for (size_t i = len; i < plen; i++)
        tmp[i] = '=';
    tmp[plen] = '\0';
    int n = plen ? EVP_DecodeBlock(out, (const unsigned char *)tmp, (int)plen) : 0;
    free(tmp);
    if (n < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    size_t real = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    *out_len = real;
    return out;
}

int lk_test_all_bytes(const void *p, size_t n, uint8_t v)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != v)
            return 0;
    return 1;
}

int64_t lk_test_reg_clock(void *arg)
{
    return *(int64_t *)arg;
}

struct lk_registry *lk_test_reg_open(struct lk_test_reg *f, unsigned flags)
{
    lk_registry *r = NULL;
    char why[512] = "";
    lk_err err = lk_registry_open(f->path, flags, &r, why, sizeof why);
    if (err != LK_OK)
        print_message("open %s: %s: %s\n", f->path, lk_errname(err), why);
    assert_int_equal(err, LK_OK);
    assert_non_null(r);
    lk_registry__set_clock(r, lk_test_reg_clock, &f->now);
    return r;
}

int lk_test_reg_setup(void **state)
{
    struct lk_test_reg *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = lk_test_tmpdir();
    assert_non_null(f->dir);
    snprintf(f->path, sizeof f->path, "%s/registry.db", f->dir);
    f->now = LK_TEST_T0;
    f->reg = lk_test_reg_open(f, LK_REG_CREATE);
    *state = f;
    return 0;
}

int lk_test_reg_teardown(void **state)
{
    struct lk_test_reg *f = *state;
    lk_registry_close(f->reg);
    lk_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}
