/*
 * use_device.c — a program of a latchkey user, built by tests/install/run.sh
 * against an installed tree only (`pkg-config latchkey-device`: the device
 * client and the core, no service-side library), that calls every function
 * liblatchkey-device's header declares. The client tries a port where
 * nothing listens, so it connects nowhere; its secure element is the
 * program's own (it is never asked to sign anything a server would check).
 *
 *   use_device CA-FILE PORT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <latchkey/lk_device.h>

static int failures;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "use_device.c:%d: %s\n", __LINE__, #cond);      \
            failures++;                                                     \
        }                                                                   \
    } while (0)

static lk_err fake_public_key(void *ctx, const char *key, lk_alg *alg, uint8_t *pub,
                              size_t pub_size, size_t *pub_len)
{
    (void)ctx; (void)key; (void)alg; (void)pub; (void)pub_size; (void)pub_len;
    return LK_ERR_KEY_NOT_FOUND;
}

static lk_err fake_sign(void *ctx, const char *key, lk_alg alg, const uint8_t digest[LK_SHA256_BYTES],
                        uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    (void)ctx; (void)key; (void)alg; (void)digest;
    if (sig_size < LK_ES256_SIG_BYTES)
        return LK_ERR_BUFFER;
    memset(sig, 0x11, LK_ES256_SIG_BYTES);
    *sig_len = LK_ES256_SIG_BYTES;
    return LK_OK;
}

static const lk_se_ops fake_ops = {
    .name = "fake",
    .public_key = fake_public_key,
    .sign_digest = fake_sign,
};

static unsigned events;
static void on_event(void *user, const lk_dev_event *ev)
{
    (void)user;
    CHECK(ev->detail != NULL);
    events++;
}

int main(int argc, char **argv)
{
    lk_se se = {&fake_ops, NULL};
    lk_dev_tls *tls = NULL;
    lk_dev *dev = NULL;
    lk_dev_config cfg;
    lk_dev_stats st;
    const char *detail = NULL;
    char why[256];
    uint64_t id = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: use_device CA-FILE PORT\n");
        return 2;
    }
    CHECK(lk_dev_backoff_ms(0, 64, 0) == 1000 && lk_dev_backoff_ms(10, 64, 500) == 64500);
    CHECK(lk_dev_now_ms() > 0);
    CHECK(strcmp(lk_dev_state_name(LK_DEV_CONNECTED), "connected") == 0);

    CHECK(lk_dev_tls_new(argv[1], "127.0.0.1", &tls, why, sizeof why) == LK_OK);
    memset(&cfg, 0, sizeof cfg);
    cfg.host = "127.0.0.1";
    cfg.port = (unsigned)atoi(argv[2]);
    cfg.tls = tls;
    cfg.project = "my-project";
    cfg.location = "us-central1";
    cfg.registry = "my-registry";
    cfg.device = "device-42";
    cfg.se = &se;
    cfg.key = "k";
    cfg.alg = LK_ALG_ES256;
    cfg.backoff_max_s = 1;
    cfg.on_event = on_event;
    CHECK(lk_dev_new(&cfg, &dev, why, sizeof why) == LK_OK);
    if (dev == NULL) {
        fprintf(stderr, "use_device: %s\n", why);
        lk_dev_tls_free(tls);
        return 1;
    }
    CHECK(strcmp(lk_dev_client_id(dev),
                 "projects/my-project/locations/us-central1/registries/my-registry/devices/device-42") == 0);
    CHECK(lk_dev_get_state(dev) == LK_DEV_IDLE);
    CHECK(lk_dev_publish_event(dev, "sensors", "21.5", 4, &id) == LK_OK && id != 0);
    CHECK(lk_dev_publish_state(dev, "ok", 2, NULL) == LK_OK);
    {
        /* A gateway: a device attached with its own key, one association only. */
        static const char err_json[] = "{\"error_type\": \"GATEWAY_ATTACHMENT_ERROR\", "
                                       "\"device_id\": \"sensor-1\"}";
        lk_dev_gateway_config gw;
        lk_dev_gateway_error ge;
        memset(&gw, 0, sizeof gw);
        CHECK(lk_dev_gateway(dev, &gw) == LK_OK);
        CHECK(lk_dev_attach(dev, "sensor-1", NULL, NULL, LK_ALG_NONE) == LK_OK);
        CHECK(lk_dev_attach(dev, "sensor-2", &se, "k", LK_ALG_ES256) == LK_OK);
        CHECK(lk_dev_attached(dev, "sensor-1") == 0); /* not yet: not connected */
        CHECK(lk_dev_publish_event_for(dev, "sensor-1", NULL, "1", 1, NULL) == LK_OK);
        CHECK(lk_dev_publish_state_for(dev, "sensor-1", "up", 2, NULL) == LK_OK);
        CHECK(lk_dev_detach(dev, "sensor-2") == LK_OK);
        CHECK(lk_dev_gateway_error_parse(err_json, sizeof err_json - 1, &ge) == LK_OK &&
              strcmp(ge.device_id, "sensor-1") == 0);
    }
    CHECK(lk_dev_switching_key(dev) == 0);
    CHECK(lk_dev_set_next_key(dev, NULL, "k2", LK_ALG_ES256) == LK_OK);
    CHECK(lk_dev_switching_key(dev) == 1);
    CHECK(lk_dev_set_next_key(dev, NULL, "k2", LK_ALG_NONE) == LK_ERR_ARG);
    CHECK(lk_dev_start(dev) == LK_OK);
    /* One attempt, refused by the closed port, then backoff. */
    CHECK(lk_dev_step(dev, 0, 0) == LK_OK);
    (void)lk_dev_fd(dev);
    (void)lk_dev_want_write(dev);
    CHECK(lk_dev_next_ms(dev) > 0);
    CHECK(lk_dev_run(dev, 300) == LK_OK);
    lk_dev_get_stats(dev, &st);
    CHECK(st.attempts >= 1 && st.connects == 0 && st.queued == 4);
    lk_dev_stop(dev);
    CHECK(lk_dev_run(dev, 2000) == LK_OK);
    CHECK(lk_dev_get_state(dev) == LK_DEV_STOPPED);
    CHECK(lk_dev_error(dev, &detail) == LK_OK && detail != NULL);
    CHECK(events > 0);
    lk_dev_free(dev);
    lk_dev_tls_free(tls);

    if (failures) {
        fprintf(stderr, "use_device: %d checks failed\n", failures);
        return 1;
    }
    printf("use_device: every function of liblatchkey-device called\n");
    return 0;
}
