"""The Ray executor: a local Ray started and stopped by `nst batch --ray`, then a two-node
`ray.cluster_utils.Cluster` (1 CPU each) that loses a node mid-run. Marked `ray`
(`pytest -m ray` runs them alone); skipped without Ray. Ray's start-up is the slow part (about
5 s per cluster here), so they are few; 64 px images and 5 steps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import threading
import time

import pytest
from typer.testing import CliRunner

from nst_core import StyleConfig
from nst_core.batch import BatchItem, EncodedImage, run_batch
from nst_core.image import read_image

from nst_cli.app import app

from helpers import EXAMPLES

ray = pytest.importorskip("ray")
from nst_core.batch.ray_executor import RayExecutor  # noqa: E402  (needs ray)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

STYLE = EXAMPLES / "starry_night.jpg"
FAST = ["--size", "64", "--steps", "5", "--precision", "float32"]
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                      "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "0"}
"""A lost node is noticed in about 2 s instead of 30 (as Ray's own tests do)."""


def nst(*args):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="nst")


def photo_folder(root: Path, copies: int) -> Path:
    folder = root / "photos"
    folder.mkdir()
    for i in range(copies):
        for name in ("tubingen.jpg", "shipwreck.jpg", "hoovertowernight.jpg"):
            shutil.copy(EXAMPLES / name, folder / f"{i}_{name}")
    return folder


def test_ray_flag_starts_a_local_ray_and_stops_it_again(tmp_path):
    assert not ray.is_initialized()
    folder = photo_folder(tmp_path, 1)
    out = tmp_path / "out"
    result = nst("batch", folder, "--style", STYLE, "-o", out, *FAST, "--ray", "--workers", "1", "--progress", "jsonl")
    assert result.exit_code == 0, result.stderr
    events = [e for e in map(json.loads, result.stdout.splitlines()) if e["event"] != "warning"]
    assert "1 Ray actor(s) (1 CPU each)" == events[0]["workers"]
    assert events[-1]["done"] == 3
    assert all(e["worker"].startswith("ray ") for e in events if e["event"] == "item-start")
    assert not ray.is_initialized()  # the Ray it started is gone
    assert len(list(out.glob("*.png"))) == 3


@pytest.fixture(scope="module")
def cluster():
    saved = {key: os.environ.get(key) for key in FAST_HEALTH_CHECKS}
    os.environ.update(FAST_HEALTH_CHECKS)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker_node = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, worker_node
    finally:
        ray.shutdown()
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_a_node_lost_mid_run_every_output_arrives_once(cluster, tmp_path):
    cluster, worker_node = cluster
    folder = photo_folder(tmp_path, 3)
    (folder / "broken.jpg").write_text("not an image")  # fails on its worker, is not retried
    out = tmp_path / "out"
    summary = out / "batch.jsonl"

    def remove_the_node_after_the_first_result():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if summary.is_file() and summary.read_text().strip():
                cluster.remove_node(worker_node)
                return
            time.sleep(0.05)

    remover = threading.Thread(target=remove_the_node_after_the_first_result)
    remover.start()
    result = nst("batch", folder, "--style", STYLE, "-o", out, *FAST, "--ray-address", cluster.address,
                 "--progress", "jsonl")
    remover.join()
    assert result.exit_code == 4, result.stderr  # the broken file
    events = [e for e in map(json.loads, result.stdout.splitlines()) if e["event"] != "warning"]
    assert events[0]["workers"] == "2 Ray actor(s) (1 CPU each)"
    done = [e for e in events if e["event"] == "item-done"]
    assert len(done) == len({e["item"] for e in done}) == 10  # each item once
    assert {e["item"]: e["status"] for e in done if e["status"] != "done"} == {"broken_starry_night.png": "failed"}
    retried = [e for e in events if e["event"] == "item-retry"]
    assert retried and all("Ray worker died" in e["message"] for e in retried)  # the lost node's item
    assert all(e["attempts"] == 2 for e in done if e["item"] in {r["item"] for r in retried})
    outputs = sorted(out.glob("*.png"))
    assert len(outputs) == 9 and all(read_image(path).size[0] == 64 for path in outputs)
    assert not [p for p in out.iterdir() if p.name.endswith(".part") or p.name.startswith(".")]
    lines = [json.loads(line) for line in summary.read_text().splitlines()]
    assert sorted(line["item"] for line in lines) == sorted(e["item"] for e in done)  # complete, once each


def test_stop_then_the_same_executor_runs_again_on_the_remaining_node(cluster):
    style = EncodedImage.from_file(STYLE)
    config = StyleConfig(size=64, steps=400, precision="float32")
    items = [BatchItem(str(i), EncodedImage.from_file(EXAMPLES / "tubingen.jpg"), (style,), config.replace(seed=i))
             for i in range(3)]
    steps = []
    with RayExecutor(workers=1, stall_timeout=30) as executor:
        results = list(run_batch(items, executor, on_event=steps.append,
                                 should_stop=lambda: any(e.kind == "step" for e in steps)))
        [stopped] = results
        assert stopped.status == "stopped" and 1 <= stopped.steps < 400 and stopped.data is not None
        quick = BatchItem("quick", items[0].content, (style,), config.replace(steps=3))
        [again] = run_batch([quick], executor)  # the stop does not stick to the executor
        assert again.status == "done" and again.steps == 3 and read_image(again.data).size == (64, 48)


def test_workers_the_cluster_cannot_place_fail_the_items_with_the_reason(cluster):
    """Two CPUs per actor on a cluster whose nodes have one each: no item waits forever."""
    item = BatchItem("x", EncodedImage.from_file(EXAMPLES / "tubingen.jpg"), (EncodedImage.from_file(STYLE),),
                     StyleConfig(size=64, steps=2))
    with RayExecutor(workers=1, cpus_per_worker=2, stall_timeout=3) as executor:
        started = time.monotonic()
        [result] = run_batch([item], executor)
    assert result.status == "failed" and "no Ray worker was available for 3 s" in result.error
    assert time.monotonic() - started < 30
