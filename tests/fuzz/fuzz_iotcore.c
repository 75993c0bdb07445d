/*
 * fuzz_iotcore — libFuzzer target for the wire grammar (lk_iotcore.h):
 * device paths and MQTT topics, which the broker parses from every device
 * and backend.
 *
 * The input, in an exact-size heap buffer without a terminating NUL (so ASan
 * reports a read past its end), is read four ways:
 *   1. as a device path: when it parses, writing the parts back must give
 *      the input exactly, and every topic built from the name must parse
 *      back to its kind (device topics) or lie in the project's space
 *      (backend topics);
 *   2. as a topic of device "dev-1": what parses as a topic must be built
 *      back exactly from its kind and subfolder, and a subfolder must lie
 *      inside the input;
 *   3. as a topic a backend of project "my-project" may read: the prefix
 *      length is 0 or exactly "latchkey/my-project/";
 *   4. as a bridge topic (latchkeyd's): what parses must be built back
 *      exactly from its device, kind and subfolder;
 *   5. as a topic a gateway publishes for any device (the plugin's router,
 *      lk_device_topic_split): the device is a valid id at /devices/D/ and
 *      the kind and subfolder are lk_device_topic_parse's for that device;
 *   6. as a name (the id checks of client ids, metadata keys, Pub/Sub
 *      names): lk_id_why says why exactly when lk_id_valid refuses, in one
 *      NUL-terminated line, and the other checks accept a name only within
 *      their length limits.
 * Any difference aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_iotcore.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const lk_topic device_kinds[] = {LK_TOPIC_EVENTS, LK_TOPIC_STATE, LK_TOPIC_CONFIG,
                                        LK_TOPIC_COMMANDS, LK_TOPIC_COMMANDS_ALL};
static const lk_topic backend_kinds[] = {LK_TOPIC_EVENTS, LK_TOPIC_STATE, LK_TOPIC_ONLINE,
                                         LK_TOPIC_OFFLINE};

static void as_path(const char *in, size_t size)
{
    lk_device_name n;
    char buf[LK_DEVICE_PATH_MAX + 1], topic[LK_BACKEND_TOPIC_MAX + 1];
    size_t len, i;
    const char *sub;

    if (lk_device_path_parse(in, size, &n) != LK_OK) {
        CHECK(n.project[0] == 0 && n.device[0] == 0);
        return;
    }
    CHECK(lk_device_path(n.project, n.location, n.registry, n.device, buf, sizeof buf, &len) == LK_OK);
    CHECK(len == size && memcmp(buf, in, size) == 0);
    for (i = 0; i < sizeof device_kinds / sizeof device_kinds[0]; i++) {
        CHECK(lk_device_topic(n.device, device_kinds[i], NULL, topic, sizeof topic, &len) == LK_OK);
        CHECK(lk_device_topic_parse(n.device, topic, len, &sub) == device_kinds[i] && sub == NULL);
    }
    for (i = 0; i < sizeof backend_kinds / sizeof backend_kinds[0]; i++) {
        CHECK(lk_backend_topic(&n, backend_kinds[i], NULL, topic, sizeof topic, &len) == LK_OK);
        CHECK(lk_backend_topic_in_project(n.project, topic, len) == 10 + strlen(n.project));
    }
}

static void as_device_topic(const char *in, size_t size)
{
    char buf[LK_DEVICE_TOPIC_MAX + 1], subcopy[LK_SUBFOLDER_MAX + 1];
    const char *sub = NULL;
    size_t len, sublen;
    lk_topic t = lk_device_topic_parse("dev-1", in, size, &sub);

    if (t == LK_TOPIC_NONE || t == LK_TOPIC_OTHER) {
        CHECK(sub == NULL);
        return;
    }
    if (sub != NULL) {
        CHECK(t == LK_TOPIC_EVENTS || t == LK_TOPIC_COMMANDS);
        CHECK(sub > in && sub <= in + size);
        sublen = (size_t)(in + size - sub);
        CHECK(sublen > 0 && sublen <= LK_SUBFOLDER_MAX);
        memcpy(subcopy, sub, sublen);
        subcopy[sublen] = 0;
    }
    CHECK(lk_device_topic("dev-1", t, sub ? subcopy : NULL, buf, sizeof buf, &len) == LK_OK);
    CHECK(len == size && memcmp(buf, in, size) == 0);
}

static void as_backend_topic(const char *in, size_t size)
{
    static const char prefix[] = "latchkey/my-project/";
    size_t n = lk_backend_topic_in_project("my-project", in, size);

    CHECK(n == 0 || (n == sizeof prefix - 1 && size >= n && memcmp(in, prefix, n) == 0));
    CHECK(n != 0 || size < sizeof prefix - 1 || memcmp(in, prefix, sizeof prefix - 1) != 0);
}

/* Every bridge topic parsed is written back byte for byte. */
static void as_bridge_topic(const char *in, size_t size)
{
    char buf[LK_BRIDGE_TOPIC_MAX + 1], subcopy[LK_SUBFOLDER_MAX + 1];
    const char *sub = NULL;
    lk_device_name n;
    size_t len, sublen;
    lk_topic t = lk_bridge_topic_parse(in, size, &n, &sub);

    if (t == LK_TOPIC_NONE) {
        CHECK(sub == NULL && n.project[0] == 0 && n.device[0] == 0);
        return;
    }
    CHECK(t == LK_TOPIC_EVENTS || (t == LK_TOPIC_STATE && sub == NULL));
    if (sub != NULL) {
        CHECK(sub > in && sub <= in + size);
        sublen = (size_t)(in + size - sub);
        CHECK(sublen > 0 && sublen <= LK_SUBFOLDER_MAX);
        memcpy(subcopy, sub, sublen);
        subcopy[sublen] = 0;
    }
    CHECK(lk_bridge_topic(&n, t, sub ? subcopy : NULL, buf, sizeof buf, &len) == LK_OK);
    CHECK(len == size && memcmp(buf, in, size) == 0);
}

static void as_gateway_topic(const char *in, size_t size)
{
    char device[LK_ID_MAX + 1];
    const char *sub = NULL, *sub2 = NULL;
    lk_topic t = lk_device_topic_split(in, size, device, &sub);

    if (t == LK_TOPIC_NONE) {
        CHECK(sub == NULL);
        return;
    }
    CHECK(lk_id_valid(device, strlen(device)));
    CHECK(size > 9 + strlen(device) && memcmp(in, "/devices/", 9) == 0 &&
          memcmp(in + 9, device, strlen(device)) == 0 && in[9 + strlen(device)] == '/');
    CHECK(lk_device_topic_parse(device, in, size, &sub2) == t && sub2 == sub);
}

static void as_name(const char *in, size_t size)
{
    char why[128];
    const char *w = lk_id_why("device id", in, size, why, sizeof why);

    CHECK((w == NULL) == (lk_id_valid(in, size) != 0));
    if (w != NULL) {
        CHECK(w == why && memchr(why, 0, sizeof why) != NULL && strchr(why, '\n') == NULL && why[0] != 0);
    } else {
        CHECK(size >= LK_ID_MIN && size <= LK_ID_MAX);
    }
    CHECK(!lk_pubsub_name_valid(in, size) || (size >= LK_PUBSUB_NAME_MIN && size <= LK_PUBSUB_NAME_MAX));
    CHECK(!lk_subfolder_valid(in, size) || (size > 0 && size <= LK_SUBFOLDER_MAX));
    CHECK(!lk_metadata_key_valid(in, size) || size > 0);
    CHECK(!lk_project_valid(in, size) || size > 0);
    CHECK(!lk_location_valid(in, size) || size > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);

    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    as_path(in, size);
    as_device_topic(in, size);
    as_backend_topic(in, size);
    as_bridge_topic(in, size);
    as_gateway_topic(in, size);
    as_name(in, size);
    free(in);
    return 0;
}
