"""The short soak (tests/integration/soak.py; docs/robustness.md, "Soak"): 30 devices for 30 s publishing
numbered events, refreshing 20-second tokens, receiving configs and commands, with the admin API and the
console in use and push delivery running, against a real broker and latchkeyd. Nothing the devices got a
PUBACK for is missing at either consumer (an MQTT backend and a push endpoint), every command the API
accepted reached its device, no descriptor is left behind, every device stayed. `make soak` runs the hour.
"""
from soak import run


def test_short_soak_loses_nothing(tmp_path):
    f = run(tmp_path, seconds=30, devices=30, rate=1.0, token_lifetime=20)
    assert f["soak_simulator_exit"] == 0, f
    assert f["soak_failed_devices"] == 0, f
    assert f["soak_delivered"] > 0 and f["soak_undelivered"] == 0, f
    assert f["soak_token_refreshes"] >= 30, f          # every device refreshed its token at least once
    assert f["soak_lost_mqtt"] == 0 and f["soak_lost_push"] == 0, f
    assert f["soak_lost_messages"] == 0, f
    assert f["soak_broker_dropped_warnings"] == 0, f
    assert f["soak_commands_sent"] > 0 and f["soak_commands_lost"] == 0, f
    assert f["soak_configs_sent"] > 0 and f["soak_configs_received"] >= f["soak_configs_sent"], f
    assert f["soak_api_errors"] == 0 and f["soak_console_errors"] == 0, f
    assert f["soak_console_requests"] > 0, f
    # the fleet gone, the broker holds exactly what it held before it came
    assert f["soak_broker_fds_after_vs_before"] == 0, f
    assert f["soak_broker_fd_growth"] <= 2 and f["soak_daemon_fd_growth"] <= 2, f
