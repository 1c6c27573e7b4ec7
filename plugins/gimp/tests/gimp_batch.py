"""Runs INSIDE GIMP 3 (gimp-console-3.0 --batch-interpreter=python-fu-eval), started by run_gimp_e2e.sh.

python-fu-eval exec()s this file with Gimp, Gegl, Gio, GLib, GObject and sys already imported.
It calls the installed plug-in through the PDB exactly as another plug-in or script would, and
records what happened (statuses, messages, layer properties, raw pixel dumps) in
``$NST_E2E_OUT/results.json``. It asserts nothing about the pictures: the checks run outside GIMP,
in tests/test_gimp_e2e.py, so a failure there shows real numbers. It raises (GIMP exits 64) only
when the plug-in is not registered at all, because then nothing else can be measured.

Cases: cancel (the plug-in is SIGKILLed mid-run by the host, as GIMP's Cancel does), rgba
(8-bit RGBA photo, style from a file, default strength and style scale), names (the dialog's
preset and style-loss lists from the engine, a run with the example plug-in's preset and style
loss and its run record on the layer, unknown names), gray16 (16-bit grayscale
with a feathered selection, style from an open layer, style scale 2), and the error paths: missing
style file, a style file that is not an image, an engine Python without nst-core, an engine Python
that does not exist.
"""

import json
import os
import time

OUT = os.environ["NST_E2E_OUT"]
PROC_NAME = "python-fu-nst-style-transfer"
ENGINE_CONFIG = os.path.join(os.environ["GIMP3_DIRECTORY"], "plug-ins", "nst-style-transfer", "nst-engine.json")
results = {"cases": {}, "gimp_version": Gimp.version()}
RESULTS = {"flatpak": "results-flatpak.json", "dialog": "results-dialog.json"}.get(os.environ.get("NST_E2E_MODE", ""),
                                                                               "results.json")


def save_results():
    with open(os.path.join(OUT, RESULTS), "w") as f:
        json.dump(results, f, indent=1)


def out(name):
    return os.path.join(OUT, name)


def dump(drawable, name, fmt):
    """Raw pixels of ``drawable`` in babl format ``fmt`` -> OUT/name.raw (read back by the test)."""
    w, h = drawable.get_width(), drawable.get_height()
    data = drawable.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, fmt, Gegl.AbyssPolicy.CLAMP)
    with open(out(name + ".raw"), "wb") as f:
        f.write(bytes(data))
    return {"path": out(name + ".raw"), "width": w, "height": h, "format": fmt}


def describe(layer):
    _, x, y = layer.get_offsets()
    return {"id": layer.get_id(), "name": layer.get_name(), "width": layer.get_width(),
            "height": layer.get_height(), "offsets": [x, y], "has_alpha": layer.has_alpha(),
            "is_gray": layer.is_gray(), "has_mask": layer.get_mask() is not None,
            "visible": layer.get_visible()}


def call(image, layer, **props):
    """Run the plug-in non-interactively; returns its status, message or returned layer id, and time."""
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    for key, value in props.items():
        config.set_property(key.replace("_", "-"), value)
    started = time.time()
    values = procedure.run(config)
    status = values.index(0)
    record = {"status": status.value_nick, "seconds": round(time.time() - started, 2),
              "style_scale": config.get_property("style-scale"), "strength": config.get_property("strength")}
    if status == Gimp.PDBStatusType.SUCCESS:
        returned = values.index(1)
        record["returned_layer"] = returned.get_id() if returned is not None else None
    elif values.length() > 1:
        record["message"] = str(values.index(1))
    return record


def set_engine_python(python):
    with open(ENGINE_CONFIG) as f:
        config = json.load(f)
    previous = config["python"]
    config["python"] = python
    with open(ENGINE_CONFIG, "w") as f:
        json.dump(config, f)
    return previous


def load(path):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))


def flatpak_case():
    """NST_E2E_MODE=flatpak (a second GIMP run with FLATPAK_ID set and a stand-in flatpak-spawn on
    PATH): one small run, which must reach the engine through flatpak-spawn --host."""
    image = load(out("content.png"))
    record = call(image, image.get_layers()[0], style_file=STYLE, size=64, steps=2, seed=4)
    record["layers"] = [describe(layer) for layer in image.get_layers()]
    results["cases"]["flatpak"] = record
    image.delete()


def installed_bridge():
    """The bridge module of the installed plug-in, in GIMP's own Python."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nst_gimp_bridge", os.path.join(os.path.dirname(ENGINE_CONFIG),
                                                                                  "nst_gimp_bridge.py"))
    bridge = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bridge
    spec.loader.exec_module(bridge)
    return bridge


def estimate_case(image, layer):
    """What the dialog shows, asked the way the dialog asks (the bridge from the installed plug-in,
    in GIMP's own Python, calling the engine)."""
    bridge = installed_bridge()
    engine = bridge.find_engine(os.path.dirname(ENGINE_CONFIG))
    record = {}
    for quality in ("preview", "full"):
        request = bridge.EngineRequest(content="", style="", output="", quality=quality, device="cpu",
                                       region_size=(layer.get_width(), layer.get_height()))
        found = bridge.estimate_run(engine, request)
        record[quality] = {"sizes": found.sizes, "steps": found.steps, "output": found.output,
                           "upscale": found.upscale, "seconds": found.seconds,
                           "text": bridge.describe_estimate(found)}
    return record


def names_case():
    """The dialog's preset and style-loss lists, made the way the dialog makes them (the installed
    bridge in GIMP's Python asking the engine: ``nst list json``), then a run with the example
    plug-in's preset and style loss, whose run record the new layer carries (parasite nst-record)."""
    bridge = installed_bridge()
    engine = bridge.find_engine(os.path.dirname(ENGINE_CONFIG))
    started = time.time()
    choices = bridge.list_choices(engine)
    record = {"list_seconds": round(time.time() - started, 2), "note": choices.note,
              "problems": list(choices.problems),
              "presets": [[p.name, p.label, p.help] for p in choices.dialog_presets()],
              "style_losses": [[p.name, p.label, p.help] for p in choices.style_losses]}
    image = load(out("content.png"))
    source = image.get_layers()[0]
    run = call(image, source, style_file=STYLE, preset="example-colorful", style_loss="channel-mean",
               size=64, steps=3, seed=5)
    run["layers_after"] = len(image.get_layers())
    if run["status"] == "success":
        parasite = image.get_layers()[0].get_parasite("nst-record")
        run["record"] = json.loads(bytes(parasite.get_data()).decode("utf-8")) if parasite is not None else None
        run["record_flags"] = parasite.get_flags() if parasite is not None else None
    record["run"] = run
    for name, props in (("unknown-preset", {"preset": "no-such-preset"}),
                        ("unknown-style-loss", {"style_loss": "no-such-loss"})):
        failed = call(image, source, style_file=STYLE, size=64, steps=2, **props)
        failed["layers_after"] = len(image.get_layers())
        record[name] = failed
    image.delete()
    return record


def dialog_case():
    """NST_E2E_MODE=dialog (a third GIMP run, with an X server: Xvfb): the dialog's Preset and
    Style loss lists themselves, the installed filter's ChoicesView (GTK widgets) on GIMP's own
    procedure config, filled in the background from the engine as the dialog fills them; then a
    pick in a list, GIMP's Reset and a saved name that is no longer installed."""
    import importlib.util

    import gi

    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk  # noqa: F401 - initialises GTK on the display

    path = os.path.join(os.path.dirname(ENGINE_CONFIG), "nst-style-transfer.py")
    spec = importlib.util.spec_from_file_location("nst_style_transfer", path)
    filt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(filt)
    config = procedure.create_config()
    config.set_property("preset", "example-colorful")  # as saved by an earlier run

    def lists():
        return {prop: {"active": combo.get_active_id(), "items": [[row[1], row[0]] for row in combo.get_model()]}
                for prop, combo in view.combos.items()}

    view = filt.ChoicesView(config)
    record = {"before": lists()}
    started = time.time()
    view.refresh()
    loop = GLib.MainLoop()

    def answered():
        if view.final or time.time() - started > 120:
            loop.quit()
            return False
        return True

    GLib.timeout_add(100, answered)
    loop.run()
    record["seconds"] = round(time.time() - started, 2)
    record["after"] = lists()
    record["status"] = view.status.get_text()
    record["tooltip"] = view.combos["preset"].get_tooltip_text()
    view.combos["style-loss"].set_active_id("channel-mean")  # the user picks the plug-in's style loss
    record["config_after_pick"] = config.get_property("style-loss")
    config.set_property("preset", "none")  # what Reset does to the config
    record["preset_after_reset"] = view.combos["preset"].get_active_id()
    config.set_property("style-loss", "gone-loss")  # Load Saved Settings: a plug-in since removed
    record["after_gone"] = lists()["style-loss"]
    results["cases"]["dialog"] = record


procedure = Gimp.get_pdb().lookup_procedure(PROC_NAME)
results["registered"] = procedure is not None
if procedure is not None:
    results["menu_paths"] = list(procedure.get_menu_paths())
    results["image_types"] = procedure.get_image_types()
save_results()
if procedure is None:
    raise RuntimeError(f"{PROC_NAME} is not registered: the plug-in was not installed correctly")

STYLE = Gio.File.new_for_path(out("style.png"))
TIMES = {}

def main_cases():
    """The cases of the ordinary (not sandboxed) GIMP run."""
    # cancel: the host's watcher (run_gimp_e2e.sh) SIGKILLs the plug-in once its engine runs.
    image = load(out("content.png"))
    record = call(image, image.get_layers()[0], style_file=Gio.File.new_for_path(out("cancel-style.png")),
                  size=96, steps=500, seed=3)
    record["layers_after"] = len(image.get_layers())
    record["tempdirs_after"] = sorted(n for n in os.listdir(os.environ["TMPDIR"]) if n.startswith("gimp-nst-"))
    results["cases"]["cancel"] = record
    image.delete()
    save_results()

    # rgba: an 8-bit RGBA photo with graded and fully transparent alpha, style from a file.
    image = load(out("content.png"))
    source = image.get_layers()[0]
    before = dump(source, "rgba-source-before", "R'G'B'A u8")
    record = call(image, source, style_file=STYLE, strength=50.0, steps=10, seed=1)  # default quality: full size
    record["layers"] = [describe(layer) for layer in image.get_layers()]
    record["source_before"] = before
    record["source_after"] = dump(source, "rgba-source-after", "R'G'B'A u8")
    record["source_id"] = source.get_id()
    if len(image.get_layers()) > 1:
        record["result"] = dump(image.get_layers()[0], "rgba-result", "R'G'B'A u8")
    results["cases"]["rgba"] = record
    image.delete()
    save_results()

    # the dialog's estimate for an 800x600 layer
    image = load(out("content.png"))
    image.scale(800, 600)
    results["cases"]["estimate"] = estimate_case(image, image.get_layers()[0])
    image.delete()
    save_results()

    results["cases"]["names"] = names_case()
    save_results()

    # gray16: 16-bit grayscale, a layer offset on a bigger canvas, feathered elliptical selection,
    # style from a layer of another open image.
    image = load(out("content.png"))
    image.convert_grayscale()
    image.convert_precision(Gimp.Precision.U16_NON_LINEAR)
    image.resize(120, 90, 10, 6)  # a bigger canvas: the layer now sits at offset (10, 6)
    source = image.get_layers()[0]
    # image coordinates; small enough that the region (box + margin) ends inside the layer, so the
    # style must fade out toward the copy (checked with the mask painted wider)
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 44, 28, 30, 26)
    Gimp.Selection.feather(image, 8.0)
    style_image = load(out("style.png"))
    style_image.get_layers()[0].set_name("Starry Night")  # a file loaded by a script has no file name
    before = dump(source, "gray16-source-before", "Y'A u16")
    _, *box = source.mask_intersect()  # the selection's bounding box, layer coordinates
    record = call(image, source, style_layer=style_image.get_layers()[0], steps=30, seed=2,
                  style_scale=2.0, strength=75.0)
    record["selection_box"] = box
    record["precision"] = image.get_precision().value_nick
    record["layers"] = [describe(layer) for layer in image.get_layers()]
    record["source_before"] = before
    record["source_after"] = dump(source, "gray16-source-after", "Y'A u16")
    record["source_id"] = source.get_id()
    record["selection"] = dump(image.get_selection(), "gray16-selection", "Y u8")
    if len(image.get_layers()) > 1:
        top = image.get_layers()[0]
        record["result"] = dump(top, "gray16-result", "Y'A u16")
        if top.get_mask() is not None:
            record["mask"] = dump(top.get_mask(), "gray16-mask", "Y u8")
            # "paint the mask wider": reveal the whole new layer, as an artist would with a white brush
            top.get_mask().fill(Gimp.FillType.WHITE)
            top.remove_mask(Gimp.MaskApplyMode.APPLY)
            record["widened"] = dump(top, "gray16-widened", "Y'A u16")
    results["cases"]["gray16"] = record
    style_image.delete()
    image.delete()
    save_results()

    # error paths: each must be EXECUTION_ERROR with a readable message, and add no layer.
    image = load(out("content.png"))
    source = image.get_layers()[0]


    def error_case(name, **props):
        record = call(image, source, **props)
        record["layers_after"] = len(image.get_layers())
        results["cases"][name] = record
        save_results()


    error_case("missing-style", style_path=out("does-not-exist.png"), size=64, steps=2)
    error_case("missing-style-file", style_file=Gio.File.new_for_path(out("does-not-exist.png")), size=64, steps=2)
    error_case("not-an-image", style_file=Gio.File.new_for_path(out("not-an-image.jpg")), size=64, steps=2)
    error_case("no-style", size=64, steps=2)
    original = set_engine_python("/usr/bin/python3")  # GIMP's own Python: no nst-core
    try:
        error_case("engine-without-nst", style_file=STYLE, size=64, steps=2)
        set_engine_python("/nonexistent/bin/python3")
        error_case("engine-missing", style_file=STYLE, size=64, steps=2)
    finally:
        set_engine_python(original)
    image.delete()

    results["tempdirs_at_end"] = sorted(n for n in os.listdir(os.environ["TMPDIR"]) if n.startswith("gimp-nst-"))


# sys.exit() in a batch command makes GIMP exit 64: choose the cases instead
if os.environ.get("NST_E2E_MODE") == "flatpak":
    flatpak_case()
elif os.environ.get("NST_E2E_MODE") == "dialog":
    dialog_case()
else:
    main_cases()
results["done"] = True
save_results()
