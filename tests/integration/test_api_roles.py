"""latchkeyd's admin API: what each role may do (docs/daemon.md, "Roles").

viewer < deviceController < provisioner < editor < admin, per project. Every method is called by
every role: a role that reaches the method's least role gets its answer, one below gets
PERMISSION_DENIED (403) and the registry file is unchanged, row for row. An account of another
project gets PERMISSION_DENIED everywhere in this one, whatever its role.
"""
import os

import pytest

from api_common import (ROLES, L, P, R, Api, Env, b64, device_path, devices_path, refused,
                        registries_path, registry_path, service_account)

DEV = "dev-0"       # made by the tool for the module; never changed in a way that matters


def _tool_device(e, dev, *extra):
    r = e.lk("devices", "create", dev, "--registry", R, "--project", P, "--region", L, *extra)
    assert r.rc == 0, r


def _tool_registry(e, reg):
    r = e.lk("registries", "create", reg, "--project", P, "--region", L)
    assert r.rc == 0, r


def _gateway(e):
    """gw-0 (a gateway, ASSOCIATION_ONLY), made once by the admin."""
    r = e.api.get(device_path("gw-0"))
    if r.status == 404:
        r = e.api.create_device("gw-0", gatewayConfig={"gatewayType": "GATEWAY",
                                                       "gatewayAuthMethod": "ASSOCIATION_ONLY"})
    assert r.status == 200, r


# name: (least role, call(api, env, tag) -> Resp, status when allowed)
OPS = {
    "registries.list": ("viewer", lambda a, e, t: a.get(registries_path()), 200),
    "registries.get": ("viewer", lambda a, e, t: a.get(registry_path()), 200),
    "registries.create": ("editor", lambda a, e, t: a.create_registry(f"new-{t}"), 200),
    "registries.patch": ("editor", lambda a, e, t: a.patch(
        registry_path(), {"httpConfig": {"httpEnabledState": "HTTP_DISABLED"}},
        query={"updateMask": "httpConfig"}), 200),
    "registries.delete": ("editor", lambda a, e, t: (_tool_registry(e, f"del-{t}"),
                                                         a.delete(registry_path(f"del-{t}")))[1], 200),
    "registries.bindDeviceToGateway": ("provisioner", lambda a, e, t: (
        _gateway(e), _tool_device(e, f"b-{t}"),
        a.post(registry_path() + ":bindDeviceToGateway", {"gatewayId": "gw-0", "deviceId": f"b-{t}"}))[2], 200),
    "registries.unbindDeviceFromGateway": ("provisioner", lambda a, e, t: (
        _gateway(e), _tool_device(e, f"u-{t}"),
        e.api.post(registry_path() + ":bindDeviceToGateway", {"gatewayId": "gw-0", "deviceId": f"u-{t}"}),
        a.post(registry_path() + ":unbindDeviceFromGateway", {"gatewayId": "gw-0", "deviceId": f"u-{t}"}))[3],
        200),
    "registries.getIamPolicy": ("admin", lambda a, e, t: a.post(registry_path() + ":getIamPolicy", {}),
                                200),
    "registries.setIamPolicy": ("admin", lambda a, e, t: a.post(registry_path() + ":setIamPolicy",
                                                                    {"policy": {}}), 501),
    "registries.testIamPermissions": ("viewer", lambda a, e, t: a.post(
        registry_path() + ":testIamPermissions", {"permissions": ["cloudiot.devices.get"]}), 200),
    "devices.list": ("viewer", lambda a, e, t: a.get(devices_path()), 200),
    "devices.get": ("viewer", lambda a, e, t: a.get(device_path(DEV)), 200),
    "devices.create": ("provisioner", lambda a, e, t: a.create_device(f"c-{t}"), 200),
    "devices.patch": ("deviceController", lambda a, e, t: a.patch(
        device_path(DEV), {"metadata": {"who": t}}, query={"updateMask": "metadata"}), 200),
    "devices.delete": ("provisioner", lambda a, e, t: (_tool_device(e, f"x-{t}"),
                                                           a.delete(device_path(f"x-{t}")))[1], 200),
    "devices.modifyCloudToDeviceConfig": ("deviceController", lambda a, e, t: a.post(
        device_path(DEV) + ":modifyCloudToDeviceConfig", {"binaryData": b64(t.encode())}), 200),
    # no broker runs here: an allowed caller waits command_wait_ms and is told UNAVAILABLE
    "devices.sendCommandToDevice": ("deviceController", lambda a, e, t: a.post(
        device_path(DEV) + ":sendCommandToDevice", {"binaryData": b64(b"cmd")}), 503),
    "devices.configVersions.list": ("viewer", lambda a, e, t: a.get(device_path(DEV) + "/configVersions"),
                                    200),
    "devices.states.list": ("viewer", lambda a, e, t: a.get(device_path(DEV) + "/states"), 200),
    "serviceAccounts.list": ("admin", lambda a, e, t: a.get(f"/v1/projects/{P}/serviceAccounts"), 200),
    "serviceAccounts.keys.list": ("admin", lambda a, e, t: a.get(
        f"/v1/projects/{P}/serviceAccounts/{e.admin_sa.email}/keys"), 200),
    "serviceAccounts.keys.disable": ("admin", lambda a, e, t: a.post(
        f"/v1/projects/{P}/serviceAccounts/{e.spare.email}/keys/{e.spare.key_id}:disable", {}), 200),
}


@pytest.fixture(scope="module")
def roles_env(tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("roles") / "lkd", extra=["--command-wait-ms", "200"])
    _tool_device(e, DEV)
    e.role_api = {role: e.as_role(role) for role in ROLES}
    e.spare = service_account(e.daemon, "spare-sa", "viewer")
    e.other = {role: Api(e.daemon, service_account(e.daemon, f"o-{role.lower()}", role, project="proj-two",
                                                    via="sql"))
               for role in ("viewer", "admin")}
    yield e
    assert e.daemon.alive(), e.daemon.log_text()[-3000:]
    e.stop()


def _cases():
    for op in OPS:
        for role in ROLES:
            yield pytest.param(op, role, id=f"{op}-{role}")


SETUP_OPS = ("registries.delete", "devices.delete", "registries.bindDeviceToGateway",
             "registries.unbindDeviceFromGateway")


@pytest.mark.parametrize("op,role", list(_cases()))
def test_role_matrix(roles_env, op, role):
    least, call, allowed_status = OPS[op]
    e = roles_env
    api = e.role_api[role]
    tag = os.urandom(3).hex()
    if ROLES[role] >= ROLES[least]:
        r = call(api, e, tag)
        assert r.status == allowed_status, (op, role, r)
        if allowed_status == 501:
            refused(r, "UNIMPLEMENTED")
        if allowed_status == 503:
            refused(r, "UNAVAILABLE")
        return
    if op in SETUP_OPS:
        r, before, after = _with_setup_first(op, api, e, tag)
    else:
        before = e.daemon.dump()
        r = call(api, e, tag)
        after = e.daemon.dump()
    refused(r, "PERMISSION_DENIED", "permission denied", api.sa.email)
    assert before == after, f"{op} by {role} was refused but changed the registry"


def _with_setup_first(op, api, e, tag):
    """Run the set-up part of op as the admin, then the request alone between two dumps."""
    if op == "registries.delete":
        _tool_registry(e, f"del-{tag}")
        before = e.daemon.dump()
        r = api.delete(registry_path(f"del-{tag}"))
    elif op == "devices.delete":
        _tool_device(e, f"x-{tag}")
        before = e.daemon.dump()
        r = api.delete(device_path(f"x-{tag}"))
    elif op == "registries.bindDeviceToGateway":
        _gateway(e)
        _tool_device(e, f"b-{tag}")
        before = e.daemon.dump()
        r = api.post(registry_path() + ":bindDeviceToGateway", {"gatewayId": "gw-0", "deviceId": f"b-{tag}"})
    else:
        _gateway(e)
        _tool_device(e, f"u-{tag}")
        r0 = e.api.post(registry_path() + ":bindDeviceToGateway", {"gatewayId": "gw-0", "deviceId": f"u-{tag}"})
        assert r0.status == 200, r0
        before = e.daemon.dump()
        r = api.post(registry_path() + ":unbindDeviceFromGateway", {"gatewayId": "gw-0", "deviceId": f"u-{tag}"})
    return r, before, e.daemon.dump()


def _other_cases():
    for op in OPS:
        for role in ("viewer", "admin"):
            yield pytest.param(op, role, id=f"{op}-{role}")


@pytest.mark.parametrize("op,role", list(_other_cases()))
def test_another_projects_account_is_denied(roles_env, op, role):
    e = roles_env
    api = e.other[role]
    tag = os.urandom(3).hex()
    r = e.role_api["viewer"].get(registry_path())      # the control: accounts do work
    assert r.status == 200, r
    if op in SETUP_OPS:
        r, before, after = _with_setup_first(op, api, e, tag)
    else:
        before = e.daemon.dump()
        r = OPS[op][1](api, e, tag)
        after = e.daemon.dump()
    refused(r, "PERMISSION_DENIED", "proj-one")
    assert before == after


def test_another_projects_account_works_in_its_own(roles_env):
    api = roles_env.other["admin"]
    r = api.get(registries_path(project="proj-two"))
    assert r.status == 200 and r.json.get("deviceRegistries", []) == [], r
    r = api.post(registries_path(project="proj-two"), {"id": "theirs"})
    assert r.status == 200 and r.json["name"] == f"projects/proj-two/locations/{L}/registries/theirs", r
    # and proj-one's admin cannot see it
    r = roles_env.api.get(registry_path("theirs", project="proj-two"))
    refused(r, "PERMISSION_DENIED")


def test_test_iam_permissions_by_role(roles_env):
    every = ["cloudiot.registries.get", "cloudiot.registries.list", "cloudiot.devices.get",
             "cloudiot.devices.list", "cloudiot.devices.update", "cloudiot.devices.updateConfig",
             "cloudiot.devices.sendCommand", "cloudiot.devices.create", "cloudiot.devices.delete",
             "cloudiot.devices.bindGateway", "cloudiot.devices.unbindGateway", "cloudiot.registries.create",
             "cloudiot.registries.update", "cloudiot.registries.delete", "cloudiot.registries.getIamPolicy",
             "cloudiot.registries.setIamPolicy"]
    least = {p: "viewer" for p in every[:4]}
    least.update({p: "deviceController" for p in every[4:7]})
    least.update({p: "provisioner" for p in every[7:11]})
    least.update({p: "editor" for p in every[11:14]})
    least.update({p: "admin" for p in every[14:]})
    asked = every + ["cloudiot.nothing", "storage.buckets.get"]
    for role, api in roles_env.role_api.items():
        r = api.post(registry_path() + ":testIamPermissions", {"permissions": asked})
        assert r.status == 200, r
        want = [p for p in every if ROLES[role] >= ROLES[least[p]]]
        assert sorted(r.json.get("permissions", [])) == sorted(want), (role, r)


def test_a_role_change_applies_at_once(roles_env, tmp_path):
    """The account is read again on every call: a new role counts for tokens already issued."""
    import sqlite3
    e = roles_env
    api = Api(e.daemon, service_account(e.daemon, f"mover-{os.urandom(2).hex()}", "viewer"), "token")
    tok = api.access_token()
    refused(api.create_registry(f"up-{os.urandom(2).hex()}"), "PERMISSION_DENIED")

    def set_role(role):
        con = sqlite3.connect(str(e.daemon.db), timeout=30)
        with con:
            con.execute("UPDATE service_accounts SET role = ? WHERE email = ?", (ROLES[role], api.sa.email))
        con.close()
    set_role("editor")
    assert api.create_registry(f"up-{os.urandom(2).hex()}").status == 200
    assert api.access_token() == tok
    set_role("viewer")
    refused(api.create_registry(f"up-{os.urandom(2).hex()}"), "PERMISSION_DENIED")
    assert api.get(registry_path()).status == 200
