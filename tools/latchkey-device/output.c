/* What the agent (run.c, gateway.c) and the simulator write: JSON strings,
 * escaped lines, a config or command. */
#include <string.h>

#include <openssl/evp.h>

#include "latchkey/lk_util.h"
#include "device_tool.h"

/* see device_tool.h */
void devtool_put_json_string(FILE *f, const uint8_t *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void devtool_put_base64(const uint8_t *s, size_t n)
{
    /* OpenSSL's encoder, a chunk at a time: no buffer as large as the payload. */
    unsigned char out[4 * 256 + 1];
    putchar('"');
    for (size_t i = 0; i < n; i += 3 * 256) {
        size_t k = n - i < 3 * 256 ? n - i : 3 * 256;
        int o = EVP_EncodeBlock(out, s + i, (int)k);
        fwrite(out, 1, (size_t)o, stdout);
    }
    putchar('"');
}

/* One message, one line: printable ASCII as is, everything else \xNN. */
void devtool_put_escaped(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\')
            fputs("\\\\", stdout);
        else if (s[i] >= 0x20 && s[i] < 0x7f)
            putchar(s[i]);
        else
            printf("\\x%02x", s[i]);
    }
}

/* see device_tool.h */
void devtool_print_message(int json, const char *device, const char *type, const char *subfolder,
                           const uint8_t *data, size_t len)
{
    if (json) {
        printf("{\"type\":\"%s\"", type);
        if (device != NULL) {
            fputs(",\"device\":", stdout);
            devtool_put_json_string(stdout, (const uint8_t *)device, strlen(device));
        }
        if (subfolder != NULL) {
            fputs(",\"subfolder\":", stdout);
            devtool_put_json_string(stdout, (const uint8_t *)subfolder, strlen(subfolder));
        }
        if (lk_utf8_valid(data, len)) {
            fputs(",\"data\":", stdout);
            devtool_put_json_string(stdout, data, len);
        } else {
            fputs(",\"dataBase64\":", stdout);
            devtool_put_base64(data, len);
        }
        fputs("}\n", stdout);
    } else {
        if (device != NULL)
            printf("@%s ", device); /* ids are printable ASCII */
        fputs(type, stdout);
        if (subfolder != NULL && subfolder[0] != '\0') {
            putchar('/');
            devtool_put_escaped((const uint8_t *)subfolder, strlen(subfolder));
        }
        fputs(": ", stdout);
        devtool_put_escaped(data, len);
        putchar('\n');
    }
    fflush(stdout);
}

