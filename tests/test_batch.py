"""nst_core.batch: items, the worker, the local executor and the Python iterator API (64 px, few steps)."""

from __future__ import annotations

import io
import math
import pickle

from PIL import Image
import pytest
import torch

from nst_core import StyleConfig
from nst_core.batch import (BatchItem, EncodedImage, ItemResult, LocalExecutor, Worker, item_key, item_seed,
                            resolve_devices, run_batch)
from nst_core.batch.local import cpu_threads
from nst_core.errors import ConfigError, DeviceError
from nst_core.image import read_image
from nst_core.result import RECORD_KEY

from helpers import EXAMPLES

STYLE = EncodedImage.from_file(EXAMPLES / "starry_night.jpg")
CONFIG = StyleConfig(size=64, steps=3, precision="float32")


def photo(name: str) -> EncodedImage:
    return EncodedImage.from_file(EXAMPLES / name)


def rgba_png() -> EncodedImage:
    """A 40x30 RGBA PNG, half transparent, so the output must keep an alpha channel."""
    image = Image.new("RGBA", (40, 30), (200, 80, 20, 255))
    image.putalpha(Image.linear_gradient("L").resize((40, 30)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return EncodedImage("rgba.png", buffer.getvalue())


def test_results_as_they_finish_with_failures_kept_to_their_item(builtin_registries):
    items = [BatchItem("tubingen", photo("tubingen.jpg"), (STYLE,), CONFIG),
             BatchItem("text", EncodedImage("notes.jpg", b"hello, not an image"), (STYLE,), CONFIG),
             ItemResult("unreadable", "failed", error="cannot read it"),
             BatchItem("rgba", rgba_png(), (STYLE,), CONFIG, extension=".webp"),
             BatchItem("huge-weight", photo("shipwreck.jpg"), (STYLE,), CONFIG.replace(style_weight=1e38))]
    events = []
    executor = LocalExecutor("cpu", registries=builtin_registries)
    results = {r.id: r for r in run_batch(items, executor, on_event=events.append)}
    assert set(results) == {"tubingen", "text", "unreadable", "rgba", "huge-weight"}

    good = results["tubingen"]
    assert (good.status, good.error, good.steps, good.attempts) == ("done", None, 3, 1)
    assert math.isfinite(good.loss) and good.seconds > 0
    assert read_image(good.data).size == (64, 48)
    with Image.open(io.BytesIO(good.data)) as image:  # the run record travels inside the PNG
        assert f'"key": "{items[0].key}"' in image.text[RECORD_KEY]
    assert good.record["batch"] == {"item": "tubingen", "key": items[0].key}
    assert good.record["seed"] == items[0].config.seed == item_seed(items[0].digests)

    assert results["text"].status == "failed" and results["text"].data is None
    assert results["text"].error.startswith("notes.jpg: ") and "\n" not in results["text"].error
    assert results["unreadable"].error == "cannot read it"  # passed through untouched
    assert results["huge-weight"].status == "failed" and "non-finite" in results["huge-weight"].error

    rgba = read_image(results["rgba"].data)  # alpha kept through the bytes round trip
    assert rgba.alpha is not None and rgba.size == (64, 48)

    assert executor.loads == 1  # one worker, one backbone, every item
    for item in ("tubingen", "rgba"):
        kinds = [e.kind for e in events if e.item == item]
        assert kinds == ["start", "step", "step", "step"]
        start = next(e for e in events if e.item == item and e.kind == "start")
        assert (start.total, start.worker, start.seed) == (3, "cpu", results[item].record["seed"])
        assert [e.step for e in events if e.item == item and e.kind == "step"] == [1, 2, 3]


def test_two_cpu_workers_split_the_cores_and_each_loads_once(builtin_registries):
    items = [BatchItem(str(i), photo(name), (STYLE,), CONFIG.replace(steps=2))
             for i, name in enumerate(["tubingen.jpg", "shipwreck.jpg", "hoovertowernight.jpg", "the_scream.jpg"])]
    before = torch.get_num_threads()
    executor = LocalExecutor("cpu", workers=2, registries=builtin_registries)
    results = list(run_batch(items, executor))
    assert sorted(r.id for r in results) == ["0", "1", "2", "3"] and all(r.ok for r in results)
    assert {r.worker for r in results} <= {"cpu#0", "cpu#1"}
    assert executor.loads == 2
    assert torch.get_num_threads() == before  # restored after the run
    assert cpu_threads(2, cores=8) == 4 and cpu_threads(3, cores=2) == 1


def test_should_stop_ends_running_items_with_their_best_image_and_starts_no_more(builtin_registries):
    items = [BatchItem(str(i), photo("tubingen.jpg"), (STYLE,), CONFIG.replace(steps=400, seed=i)) for i in range(3)]
    steps = []
    results = list(run_batch(items, LocalExecutor("cpu", registries=builtin_registries),
                             should_stop=lambda: len(steps) >= 2, on_event=steps.append))
    [result] = results  # the others never started
    assert result.status == "stopped" and 1 <= result.steps < 400
    assert read_image(result.data).size == (64, 48)
    assert result.record["status"] == "stopped"


def test_leaving_the_loop_early_stops_the_workers(builtin_registries):
    items = (BatchItem(str(i), photo("tubingen.jpg"), (STYLE,), CONFIG.replace(steps=2)) for i in range(5))
    pulled = []

    def source():
        for item in items:
            pulled.append(item.id)
            yield item

    for result in run_batch(source(), LocalExecutor("cpu", registries=builtin_registries)):
        assert result.ok
        break
    assert len(pulled) <= 2  # read lazily: one item per free worker, not the whole batch


def test_key_and_seed_follow_inputs_and_settings_not_the_device():
    content = photo("tubingen.jpg")
    item = BatchItem("a", content, (STYLE,), CONFIG)
    same = BatchItem("b", EncodedImage("elsewhere.jpg", content.data), (STYLE,), CONFIG.replace(device="cpu"))
    assert item.key == same.key and item.config.seed == same.config.seed  # names and devices do not matter
    assert BatchItem("c", content, (STYLE,), CONFIG.replace(steps=4)).key != item.key
    assert BatchItem("d", content, (STYLE,), CONFIG.replace(seed=1)).key != item.key
    assert BatchItem("e", content, (STYLE,), CONFIG, extension=".jpg").key != item.key
    assert BatchItem("f", photo("shipwreck.jpg"), (STYLE,), CONFIG).key != item.key
    assert item_key(item.digests, item.config, ".PNG") == item.key
    assert 0 <= item.config.seed < 2**31
    clone = pickle.loads(pickle.dumps(item))  # items travel to other processes
    assert clone.key == item.key and clone.content.data == content.data


def test_bad_items_are_refused_when_made():
    with pytest.raises(ConfigError, match="at least one style"):
        BatchItem("x", STYLE, (), CONFIG)
    with pytest.raises(ConfigError, match="1 mask"):
        BatchItem("x", STYLE, (STYLE, STYLE), CONFIG, masks=(None,))
    with pytest.raises(ConfigError, match="unknown output extension"):
        BatchItem("x", STYLE, (STYLE,), CONFIG, extension=".gif")


def test_result_save_is_atomic_and_writes_the_record(tmp_path, builtin_registries):
    result = Worker("cpu", registries=builtin_registries).run(BatchItem("t", photo("tubingen.jpg"), (STYLE,), CONFIG))
    written = result.save(tmp_path / "t.png")
    assert read_image(written).size == (64, 48)
    assert '"key"' in (tmp_path / "t.png.json").read_text()
    with pytest.raises(ConfigError, match="encoded as .png"):
        result.save(tmp_path / "t.jpg")
    with pytest.raises(ConfigError, match="no image"):
        ItemResult("f", "failed", error="x").save(tmp_path / "f.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.png", "t.png.json"]


def test_devices():
    assert resolve_devices("cpu") == ["cpu"]
    if not torch.cuda.is_available():
        assert resolve_devices("auto") == ["cpu"]
        with pytest.raises(DeviceError):
            resolve_devices("cuda:0")
    with pytest.raises(ConfigError, match="twice"):
        resolve_devices("cpu,cpu")
    with pytest.raises(ConfigError, match="--workers"):
        LocalExecutor("cpu", workers=0)
