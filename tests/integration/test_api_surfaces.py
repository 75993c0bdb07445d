"""The admin API and the device surface never accept each other's credentials (docs/daemon.md).

This file holds the broker's side: a service account's token (a JWT signed by its key file, shaped
like a device token: aud = the project) is refused as a device's MQTT password, whatever device it
names. The API's side (a device token refused by latchkeyd) is in test_api_auth.py.
"""
import json
import time

import jwt
import pytest

from plugin_common import (PROJECT, REGISTRY, assert_refused, ensure_registry, make_device,
                           start_broker)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(tmp_path_factory, "surfaces")
    yield b
    b.stop()


def service_account(broker, name, role="admin"):
    key_file = broker.base / f"{name}.json"
    r = broker.lk("service-accounts", "create", name, "--project", PROJECT, "--role", role,
                  "--token-uri", "https://127.0.0.1:1/token", "--key-file", key_file)
    assert r.rc == 0, r
    return json.loads(key_file.read_text())


def sa_token(key, **claims):
    now = int(time.time())
    body = {"iss": key["client_email"], "sub": key["client_email"], "iat": now, "exp": now + 3600,
            "scope": "https://www.googleapis.com/auth/cloud-platform"}
    body.update(claims)
    return jwt.encode(body, key["private_key"], algorithm="RS256", headers={"kid": key["private_key_id"]})


def test_service_account_token_is_not_a_device_password(broker):
    ensure_registry(broker, REGISTRY)
    dev = make_device(broker, "surface-dev", algs=("ES256",))
    rsa_dev = make_device(broker, "surface-rsa-dev", algs=("RS256",))
    key = service_account(broker, "ops-admin")
    # Shaped exactly like a device token for this project: only the key differs.
    for d, reasons in ((dev, ["LK_ERR_TOKEN_ALG"]), (rsa_dev, ["LK_ERR_TOKEN_SIGNATURE"])):
        tok = sa_token(key, aud=PROJECT)
        assert_refused(broker, d.client_id, tok, reasons)
    # Its plain API form (scope, no aud) is refused too.
    assert_refused(broker, rsa_dev.client_id, sa_token(key), ["LK_ERR_TOKEN_CLAIM", "aud"])
