"""perf.disk_used and perf.network_io must be able to fail, and what they count is read correctly:
docker stats `networks` and `docker ps --size` SizeRw parsed from frames recorded on this machine's
engine (tests/data/), the counters' growth over a window (with a reset), the folders' `du`, the
url target's /metrics volume; a total over the threshold fails naming its criterion; a target
without a source is recorded as skipped with its reason, never as passed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from validation.criteria import SKIP
from validation.perf import judge as J
from validation.perf.sampler import DockerStatsBackend, MetricsBackend, Sample, Sampler, counter_increase
from validation.targets.process import ProcessTarget
from validation.targets.resources import DiskUsage, dir_bytes, docker_network_bytes, docker_size_rw, metrics_volume_used
from validation.targets.url import UrlTarget
from validation.testing import expect_failure, make_gate
from validation.testing.stub_perf import PerfStub

DATA = Path(__file__).with_name("data")


def _json(name: str):
    return json.loads((DATA / name).read_text())


def _verdict(gate, cid: str):
    return [r for r in gate.recorder.results if r.id == cid][-1]


# --- reading -----------------------------------------------------------------------------------


def test_docker_stats_networks_from_a_recorded_frame():
    frame = _json("docker_stats_frame.json")  # engine 20.10, API 1.41, a container on the bridge
    assert docker_network_bytes(frame) == (736, 0)
    s = DockerStatsBackend.parse(frame)
    assert (s.net_rx_bytes, s.net_tx_bytes) == (736, 0) and s.memory_bytes > 0
    two = {**frame, "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}}}
    assert docker_network_bytes(two) == (11, 22)  # every interface
    no_net = {k: v for k, v in frame.items() if k != "networks"}  # network mode none / host
    assert docker_network_bytes(no_net) is None
    assert DockerStatsBackend.parse(no_net).net_rx_bytes is None


def test_size_rw_from_a_recorded_docker_ps_size():
    listing = _json("docker_ps_size.json")  # GET /containers/json?size=1 after writing 3,000,000 bytes
    assert docker_size_rw(listing) == 3_000_000
    empty_layer = [{k: v for k, v in listing[0].items() if k != "SizeRw"}]  # the engine omits SizeRw = 0
    assert docker_size_rw(empty_layer) == 0
    assert docker_size_rw([]) is None  # container gone
    assert docker_size_rw([{"Id": "x"}]) is None  # listed without --size


def test_network_growth_over_a_window_counts_a_reset():
    assert counter_increase([100, 150, 400]) == 300
    assert counter_increase([100, 400, 50, 80]) == 300 + 50 + 30  # restart: counters from 0 again
    assert counter_increase([None, None]) is None
    s = Sampler(MetricsBackend("http://127.0.0.1:9"))
    s.samples = [Sample(1000.0 + i, 100, 10.0, None, 1000 + i * 2_000_000, 500 + i * 1_000_000) for i in range(11)]
    summ = s.summary()
    assert (summ.net_rx_bytes, summ.net_tx_bytes, summ.seconds) == (20_000_000, 10_000_000, 10.0)
    assert s.summary(1005.0, 1010.0).net_rx_bytes == 10_000_000
    s.samples = [Sample(1000.0 + i, 100, 10.0) for i in range(5)]  # psutil / /metrics: no counters
    assert s.summary().net_rx_bytes is None


def test_dir_bytes_counts_allocated_blocks_once_per_file(tmp_path):
    (tmp_path / "run").mkdir()
    blob = tmp_path / "run" / "adapter.safetensors"
    blob.write_bytes(os.urandom(300_000))
    os.link(blob, tmp_path / "run" / "same-inode")
    n = dir_bytes(tmp_path)
    assert 300_000 <= n < 300_000 + 64 * 1024, n  # the file once (+ folders' blocks)
    assert dir_bytes(tmp_path / "missing") == 0


def test_metrics_volume_used():
    page = ('# TYPE cai_checkpoint_volume_bytes gauge\ncai_checkpoint_volume_bytes{kind="used"} 4.5e+09\n'
            'cai_checkpoint_volume_bytes{kind="free"} 5.0e+09\n')
    assert metrics_volume_used(page) == 4.5e9
    assert metrics_volume_used(page.replace("4.5e+09", "NaN")) is None  # the app could not read its volume
    assert metrics_volume_used("# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1.0\n") is None


# --- disk ----------------------------------------------------------------------------------------


def _usage(**parts_gb) -> DiskUsage:
    return DiskUsage("fake reading", {k: int(v * 1e9) for k, v in parts_gb.items()})


def test_disk_over_the_threshold_fails_naming_what_was_counted():
    J.judge_disk(g := make_gate("plan"), _usage(image=1.53, writable_layer=0.01, checkpoints=0.3))
    assert _verdict(g, "perf.disk_used").verdict == "pass" and _verdict(g, "perf.disk_used").measured == 1.84
    e = expect_failure(J.judge_disk, make_gate("plan"), _usage(image=1.53, checkpoints=8.0),
                       criterion="perf.disk_used", measured="9.53 GB")
    assert "< 9 GB" in str(e) and "image 1.530 GB + checkpoints 8.000 GB = 9.530 GB" in str(e)
    assert _usage(layer=0.0000123, logs=0.0392).describe().startswith("layer 12.3 kB + logs 39.2 MB = 0.039 GB")
    expect_failure(J.judge_disk, make_gate("plan", perf__disk_used=1), _usage(image=1.53), criterion="perf.disk_used")


def test_disk_unread_fails_and_not_measurable_is_skipped_not_passed():
    expect_failure(J.judge_disk, make_gate("plan"), DiskUsage("docker ps --size", error="no size"),
                   criterion="perf.disk_used")
    g = make_gate("plan")
    with pytest.raises(pytest.skip.Exception, match="not exported"):
        J.judge_disk(g, DiskUsage("/metrics", skipped="url target: not exported"))
    r = _verdict(g, "perf.disk_used")
    assert r.verdict == SKIP and r.reason == "url target: not exported"


def test_process_target_counts_its_data_folders_and_model_cache(tmp_path):
    t = ProcessTarget.__new__(ProcessTarget)  # the accounting only: no app started
    t.checkpoint_dir, t.log_dir = tmp_path / "ckpt", tmp_path / "logs"
    for d, n in ((t.checkpoint_dir, 200_000), (t.log_dir, 10_000), (tmp_path / "cache" / "smollm2", 500_000)):
        d.mkdir(parents=True)
        (d / "f").write_bytes(os.urandom(n))
    t._cwd, t._full_env = tmp_path, {"MODEL_CACHE_DIR": "cache"}
    u = t.disk_usage()
    assert list(u.parts)[:2] == ["checkpoints", "logs"] and str(tmp_path / "cache") in list(u.parts)[2]
    assert 710_000 <= u.total < 710_000 + 100_000, u.parts
    expect_failure(J.judge_disk, make_gate("plan", perf__disk_used=0.0005), u, criterion="perf.disk_used")


def test_url_target_reads_the_volume_from_metrics_or_is_skipped():
    with PerfStub(volume_used_gb=12) as full:
        u = UrlTarget(full.base_url).start().disk_usage()
    assert u.parts == {"checkpoint volume's file system, used": 12_000_000_000}
    e = expect_failure(J.judge_disk, make_gate("plan"), u, criterion="perf.disk_used", measured="12 GB")
    assert "file system" in str(e)
    with PerfStub() as older:  # no cai_checkpoint_volume_bytes{kind="used"}
        u = UrlTarget(older.base_url).start().disk_usage()
    assert u.total is None and "has no cai_checkpoint_volume_bytes" in u.skipped


# --- network -------------------------------------------------------------------------------------


def _net(rx_mb: float, tx_mb: float) -> Sampler:
    s = Sampler(MetricsBackend("http://127.0.0.1:9"))
    s.samples = [Sample(1000.0, 100, 10.0, None, 0, 0), Sample(1060.0, 100, 10.0, None, int(rx_mb * 1e6), int(tx_mb * 1e6))]
    return s


def test_network_over_the_threshold_fails():
    J.judge_network(g := make_gate("plan", "container"), _net(1.5, 3.0).summary(), "container", soft=False)
    r = _verdict(g, "perf.network_io")
    assert r.verdict == "pass" and r.measured == 4.5 and "received 1.50 MB + sent 3.00 MB" in r.detail
    e = expect_failure(J.judge_network, make_gate("plan", "container"), _net(300, 20).summary(), "container",
                       soft=False, criterion="perf.network_io", measured="320 MB")
    assert "<= 100 MB" in str(e)
    no_counters = Sampler(MetricsBackend("http://127.0.0.1:9"))
    no_counters.samples = [Sample(1000.0, 100, 10.0)]
    expect_failure(J.judge_network, make_gate("plan", "container"), no_counters.summary(), "container",
                   soft=False, criterion="perf.network_io")


@pytest.mark.parametrize("kind", ["process", "url"])
def test_network_on_process_and_url_is_skipped_with_the_reason_and_the_test_goes_on(kind):
    g = make_gate("plan", kind)
    J.judge_network(g, _net(1, 1).summary(), kind)  # no pytest skip: the load test measures the rest
    r = _verdict(g, "perf.network_io")
    assert r.verdict == SKIP and r.reason == J.NETWORK_NOT_MEASURED[kind]
    assert "not measured" in J.network_line(Sampler(MetricsBackend("http://x")).summary(), kind)


def test_process_target_model_cache_defaults_to_the_settings_default(tmp_path):
    """With MODEL_CACHE_DIR unset, the process target counts the app's default cache folder (read from
    the settings' field, not from the class, which has no such attribute)."""
    from validation.targets.process import ProcessTarget

    target = object.__new__(ProcessTarget)  # no process: only the path logic
    target._cwd, target._full_env = tmp_path, {}
    assert target.model_cache_dir == tmp_path / "demo" / "models"
    target._full_env = {"MODEL_CACHE_DIR": "/srv/models"}
    assert target.model_cache_dir == Path("/srv/models")
