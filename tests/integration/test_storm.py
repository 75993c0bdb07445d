"""The restart storm, end to end (docs/benchmarks.md, "Connect storm"; its figures are
bench/storm.sh's, at 10,000 devices).

A fleet connects (`latchkey-device simulate`, 20 attempts in flight, retries too) to a broker whose plugin keeps
its verified-token cache in a file (plugin_opt_token_cache_file). The broker stops (SIGTERM: the
cache is saved) and starts again on the same ports while the simulator keeps running: every
device reconnects with the token it had (the device client reuses a token until its refresh
margin), and every one of those reconnects is answered from the loaded cache - no signature
checked again (the plugin's counters, plugin_opt_metrics_file). One device's credential is
deleted while the broker is down: its cached token must not let it back in.
"""
import json
import signal
import subprocess
import time

from broker import Broker, PROJECT, REGION, REGISTRY
from conftest import BIN, tool_argv
from test_simulate import backend, create_keys, fleet_args, import_devices

N = 100

# The plugin's metrics file read by bench/mshm_read (built beside the tools), the one reader of its layout.
MSHM_READ = BIN.parent / "bench" / "mshm_read"


def cache_counters(path):
    """(cache_hits, cache_misses) of the plugin's metrics file (plugin_opt_metrics_file)."""
    r = subprocess.run([str(MSHM_READ), str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    hits, misses = r.stdout.split()[:2]
    return int(hits), int(misses)


def wait_for(what, pred, timeout):
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, what
        time.sleep(0.05)


class Sim:
    """A `latchkey-device simulate` running in the background, output in files."""

    def __init__(self, base, name, args):
        self.out, self.err = base / f"{name}.out", base / f"{name}.err"
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(tool_argv("simulate", *args, binary="latchkey-device"),
                                         stdout=o, stderr=e)

    def stderr(self):
        return self.err.read_text(errors="replace")

    def stop(self):
        """SIGTERM (the devices stop, the summary is printed); returns the summary."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        return json.loads(self.out.read_text().strip().splitlines()[-1])


def test_restart_storm_reuses_verified_tokens_and_keeps_revocations(tmp_path):
    base = tmp_path / "broker"
    metrics, cache = base / "metrics", base / "token-cache"
    b = Broker(base, opts={"metrics_file": metrics, "token_cache_file": cache})
    sims = []
    try:
        store, jsonl, _ = create_keys(tmp_path, N)
        (tmp_path / "rev").mkdir()
        rstore, rjsonl, _ = create_keys(tmp_path / "rev", 1, prefix="rev-")
        import_devices(b, jsonl)
        import_devices(b, rjsonl)
        b.close(backend(b))   # the plugin has ticked

        fleet = Sim(tmp_path, "fleet", fleet_args(b, store, N, "--parallel", 20, "--duration", 300))
        sims.append(fleet)
        rev = Sim(tmp_path, "rev", fleet_args(b, rstore, 1, "--prefix", "rev-", "--duration", 300))
        sims.append(rev)
        wait_for("the fleet connected", lambda: f"all {N} devices connected" in fleet.stderr(), 120)
        wait_for("the revoked device connected", lambda: "all 1 devices connected" in rev.stderr(), 30)
        hits, misses = cache_counters(metrics)
        assert misses >= N + 1, (hits, misses)   # the first storm: every token checked

        assert b.stop() == 0
        assert cache.exists() and cache.stat().st_size > 0
        assert cache.stat().st_mode & 0o777 == 0o600, oct(cache.stat().st_mode)
        # while the broker is down, the device loses its only credential
        r = b.lk("devices", "credentials", "delete", "rev-00001", "0", "--registry", REGISTRY,
                 "--project", PROJECT, "--region", REGION)
        assert r.rc == 0, r
        b.start()

        # every device of the fleet back, each answered from the loaded cache
        wait_for("the fleet reconnected from the cache", lambda: cache_counters(metrics)[0] >= N, 120)
        wait_for("the revoked device refused", lambda: "refused (CONNACK" in rev.stderr(), 30)
        r_sum = rev.stop()
        f_sum = fleet.stop()
        hits, misses = cache_counters(metrics)
        # N hits: the fleet's N reconnects (the revoked device is never answered from the cache);
        # the misses are the revoked device's attempts alone, at least its reused token's
        assert hits == N, (hits, misses)
        assert 1 <= misses <= r_sum["attempts"] - 1, (misses, r_sum)
        # no device of the fleet signed a second token, none was refused
        assert f_sum["connected"] == N and f_sum["tokens"] == N, f_sum
        assert f_sum["refusals"] == 0 and f_sum["tls_failures"] == 0, f_sum
        assert f_sum["disconnects"] >= N, f_sum
        # the revoked device: connected before, refused after (its reused token, then new ones)
        assert r_sum["connected"] == 1 and r_sum["refusals"] >= 1, r_sum
        assert "rev-00001" in b.log_text()
    finally:
        for s in sims:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
        b.stop()
