#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters > Artistic > Neural Style Transfer... (nst-core, Gatys et al. 2015).

The GIMP side only: the dialog, reading and writing pixels, progress and errors. GIMP's Python has
no torch, so the engine runs out of process (``<python> -m nst_cli run ... --progress jsonl``);
argument building, event parsing, temp folders, PNG writing and error messages live in the
GIMP-free module ``nst_gimp_bridge`` next to this file (tested by plain pytest).

What a run does:

1. puts the plug-in into its own process group (GIMP's Cancel then kills the engine too);
2. exports the active layer (only the selection's bounding box plus a margin, when there is a
   selection) and, if a style layer was chosen, that layer, as PNGs into a private temp folder;
3. runs the engine, mapping its jsonl events to GIMP's progress bar (step, scale, time left);
4. in one undo group: duplicates the source layer above it, named after the style, writes the
   stylised colour into the copy while keeping the source's alpha exactly, and adds a layer mask
   from the selection (feathered edges kept). The source layer is never modified.

Install with ``nst gimp install`` (records which Python has nst-core); see plugins/gimp/README.md.
Written for the GIMP 3.0 API (see shared/research/gimp3-plugin.md for the facts it relies on).
"""

import os
import shutil
import sys
import traceback

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

gi.require_version("Gegl", "0.4")
from gi.repository import Gegl  # noqa: E402
from gi.repository import Gio, GLib, GObject  # noqa: E402

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
if PLUGIN_DIR not in sys.path:
    sys.path.insert(0, PLUGIN_DIR)
import nst_gimp_bridge as bridge  # noqa: E402

PROC_NAME = bridge.PROC_NAME
TITLE = "Neural Style Transfer"
RW = GObject.ParamFlags.READWRITE


class UserError(Exception):
    """Shown to the user as the procedure's error message."""


# ------------------------------------------------------------------------------------------------
# Pixels in and out
# ------------------------------------------------------------------------------------------------


def is_8_bit(image):
    return image.get_precision() in (Gimp.Precision.U8_LINEAR, Gimp.Precision.U8_NON_LINEAR,
                                     Gimp.Precision.U8_PERCEPTUAL)


def pixel_format(image):
    """The babl format used for the final merge: 8-bit images stay 8-bit, deeper ones go through float."""
    return ("R'G'B'A u8", 1) if is_8_bit(image) else ("R'G'B'A float", 4)


def export_rgb_png(drawable, x, y, width, height, path):
    """Write a region of ``drawable`` (layer coordinates) as an sRGB RGB PNG for the engine:
    8-bit for 8-bit images, 16-bit for deeper ones (the engine reads 16-bit PNGs at full precision).

    Alpha is not sent: the plug-in keeps the source's alpha itself (see insert_result).
    """
    bits = 8 if is_8_bit(drawable.get_image()) else 16
    data = drawable.get_buffer().get(Gegl.Rectangle.new(x, y, width, height), 1.0, f"R'G'B' u{bits}",
                                     Gegl.AbyssPolicy.CLAMP)
    bridge.write_png(path, width, height, bytes(data), channels=3, bit_depth=bits)


def load_stylised(path, width, height, fmt):
    """The engine's result scaled to ``width`` x ``height``, as raw pixels in ``fmt``."""
    result = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
    if result is None:
        raise UserError(f"GIMP could not read the engine's result {path}")
    try:
        if (result.get_width(), result.get_height()) != (width, height):
            Gimp.context_push()
            try:
                Gimp.context_set_interpolation(Gimp.InterpolationType.CUBIC)
                result.scale(width, height)
            finally:
                Gimp.context_pop()
        layer = result.get_layers()[0]
        return bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0, fmt,
                                            Gegl.AbyssPolicy.CLAMP))
    finally:
        result.delete()


def insert_result(image, source, stylised, region, fmt, bytes_per_sample, name, has_selection):
    """Add the stylised copy of ``source`` above it; returns the new layer. Call inside an undo group."""
    x, y, width, height = region
    layer = Gimp.Layer.new_from_drawable(source, image)
    layer.set_name(name)
    image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
    _, off_x, off_y = source.get_offsets()
    layer.set_offsets(off_x, off_y)
    layer.set_visible(True)
    rect = Gegl.Rectangle.new(x, y, width, height)
    original = bytes(source.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.CLAMP))
    pixels = bridge.replace_color_keep_alpha(original, stylised, bytes_per_sample)
    # The layer is new (its insertion is the undo step), so its buffer is written directly; a
    # shadow buffer + merge_shadow would be clipped and blended by the selection a second time.
    buffer = layer.get_buffer()
    buffer.set(rect, fmt, pixels)
    buffer.flush()
    layer.update(x, y, width, height)
    if has_selection:
        if layer.get_mask() is not None:  # keep what the source's own mask hid
            layer.remove_mask(Gimp.MaskApplyMode.APPLY)
        layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
    return layer


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def selection_region(image, drawable):
    """``(region, selection_box)``: what the engine should see and the selection's bounding box,
    in layer coordinates (``selection_box`` is None without a selection)."""
    width, height = drawable.get_width(), drawable.get_height()
    if Gimp.Selection.is_empty(image):
        return (0, 0, width, height), None
    ok, x, y, w, h = drawable.mask_intersect()
    if not ok or w <= 0 or h <= 0:
        raise UserError("the selection does not overlap the active layer; select part of it or "
                        "Select > None")
    return bridge.work_region(width, height, (x, y, w, h)), (x, y, w, h)


def write_fade_mask(region, selection_box, layer_size, workdir):
    """The engine's --mask fading the style out across the region's margin (None: no margin)."""
    if selection_box is None:
        return None
    mask = bridge.fade_mask(region, selection_box, layer_size)
    if mask is None:
        return None
    path = os.path.join(workdir, "fade-mask.png")
    bridge.write_png(path, mask[0], mask[1], mask[2], channels=1)
    return path


def region_of(image, drawable):
    """The region the engine will see, or the whole layer when that cannot be told (estimates)."""
    try:
        return selection_region(image, drawable)[0]
    except UserError:
        return (0, 0, drawable.get_width(), drawable.get_height())


def make_request(config, region, **paths):
    return bridge.EngineRequest(
        region_size=(region[2], region[3]), quality=config.get_property("quality"),
        strength=config.get_property("strength"), size=config.get_property("size"),
        steps=config.get_property("steps"), seed=config.get_property("seed"),
        device=config.get_property("device"), preserve_color=config.get_property("preserve-color"),
        style_scale=config.get_property("style-scale"),
        preset=(config.get_property("preset") or "").strip() or bridge.PRESET_NONE,
        style_loss=(config.get_property("style-loss") or "").strip() or bridge.DEFAULT_STYLE_LOSS, **paths)


def style_source(config, workdir):
    """``(path, label)`` of the style image: the chosen layer (exported), else the chosen file."""
    style_layer = config.get_property("style-layer")
    if style_layer is not None:
        path = os.path.join(workdir, "style.png")
        export_rgb_png(style_layer, 0, 0, style_layer.get_width(), style_layer.get_height(), path)
        return path, style_layer_label(style_layer)
    style_path = (config.get_property("style-path") or "").strip()
    if style_path:
        if not os.path.isfile(style_path):
            raise UserError(f"style image not found: {style_path}")
        return style_path, style_path
    style_file = config.get_property("style-file")
    path = style_file.get_path() if style_file is not None else None
    if not path and style_file is not None and style_file.get_uri():
        raise UserError(f"style image not found: {style_file.get_uri()} (only local files can be read)")
    if not path:
        raise UserError("choose a style image (a painting) in the dialog: a file or an open layer")
    if not os.path.isfile(path):
        raise UserError(f"style image not found: {path}")
    return path, path


def style_layer_label(layer):
    """A name for the style: the file of a single-layer image (an opened painting), else the layer's name."""
    image = layer.get_image()
    if image is not None and len(image.get_layers()) == 1:
        for style_file in (image.get_file(), image.get_imported_file()):
            if style_file is not None and style_file.get_path():
                return style_file.get_path()
    return layer.get_name()


RECORD_PARASITE = "nst-record"
"""The new layer carries the engine's run record (settings, seed, and the plug-in distribution
and version of every name the run used) as a persistent parasite, saved with the image in XCF."""


def attach_record(layer, record_path):
    """Attach the run record's JSON to ``layer`` (nothing when the engine wrote none)."""
    if not record_path or not os.path.isfile(record_path):
        return
    with open(record_path, "rb") as handle:
        data = handle.read()
    layer.attach_parasite(Gimp.Parasite.new(RECORD_PARASITE, Gimp.PARASITE_PERSISTENT, list(data)))


def report_warnings(warnings, run_mode, known_problems):
    """The run's warnings: a message box after an interactive run, stderr otherwise. A broken
    plug-in's warning (``nst run`` repeats it at every run) is not among them after an interactive
    run: the dialog states it once, next to the preset and style-loss lists it concerns."""
    if run_mode == Gimp.RunMode.INTERACTIVE:
        shown = bridge.run_warnings(warnings, known_problems)
        if shown:
            Gimp.message("Neural style transfer: " + "; ".join(shown))
    elif warnings:
        print("Neural style transfer: " + "; ".join(warnings), file=sys.stderr)


def stylize(image, drawable, config, run_mode, known_problems=()):
    """Everything between the dialog and the new layer; raises UserError / bridge.BridgeError.
    ``known_problems``: the plug-in problems the dialog showed (not repeated after the run)."""
    Gimp.progress_init("Neural style transfer: starting the engine\u2026")
    temp_base = bridge.sandbox_tempdir_base()
    bridge.clean_stale_tempdirs(temp_base)
    engine = bridge.find_engine(PLUGIN_DIR)
    workdir = bridge.make_private_tempdir(temp_base)
    try:
        style_path, style_label = style_source(config, workdir)
        region, selection_box = selection_region(image, drawable)
        has_selection = selection_box is not None
        content_path = os.path.join(workdir, "content.png")
        export_rgb_png(drawable, *region, content_path)
        request = make_request(config, region, content=content_path, style=style_path,
                               output=os.path.join(workdir, "result.png"),
                               mask=write_fade_mask(region, selection_box,
                                                    (drawable.get_width(), drawable.get_height()), workdir))
        argv = bridge.build_argv(engine.python, request)

        def on_progress(fraction, text):
            if text:
                Gimp.progress_set_text(text)
            Gimp.progress_update(fraction)

        Gimp.progress_pulse()
        outcome = bridge.run_engine(argv, workdir, on_progress, engine=engine)
        error = bridge.outcome_error(outcome, engine)
        if error:
            raise UserError(error)
        output = outcome.state.output or request.output
        if not os.path.isfile(output):
            raise UserError(f"the engine finished but wrote no image at {output}")
        Gimp.progress_set_text("Neural style transfer: adding the layer")
        fmt, bytes_per_sample = pixel_format(image)
        stylised = load_stylised(output, region[2], region[3], fmt)
        image.undo_group_start()
        try:
            layer = insert_result(image, drawable, stylised, region, fmt, bytes_per_sample,
                                  bridge.layer_name(style_label), has_selection)
        finally:
            image.undo_group_end()
        attach_record(layer, outcome.state.record)
        report_warnings(outcome.state.warnings, run_mode, known_problems)
        Gimp.displays_flush()
        return layer
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        Gimp.progress_end()


class EstimateView:
    """The dialog's estimate: working sizes, upscale factor and time for the current settings.

    Asks the engine (``nst gimp estimate``, the sizes from the engine's own planning and a cached
    calibration of the device) in the background with Gio.Subprocess, so the dialog stays
    responsive; any change of the settings starts a new estimate and cancels the old one.
    """

    def __init__(self, label, config, image, drawable):
        self.label, self.config, self.image, self.drawable = label, config, image, drawable
        self.cancellable = None
        self.estimate = None
        self.key = None
        try:
            self.engine = bridge.find_engine(PLUGIN_DIR)
        except bridge.BridgeError as exc:
            self.engine = None
            label.set_text(str(exc))

    def request(self):
        region = region_of(self.image, self.drawable)
        return make_request(self.config, region, content="", style="", output="")

    def refresh(self, *_args):
        if self.engine is None:
            return
        try:
            request = self.request()
        except bridge.BridgeError as exc:
            self.label.set_text(str(exc))
            return
        argv = bridge.sandbox_argv(bridge.build_estimate_argv(self.engine.python, request))
        if argv == self.key:
            return
        self.key, self.estimate = argv, None
        if self.cancellable is not None:
            self.cancellable.cancel()
        self.cancellable = Gio.Cancellable()
        self.label.set_text("Working out the sizes and the time\u2026 (the first time measures the device)")
        launcher = Gio.SubprocessLauncher.new(Gio.SubprocessFlags.STDOUT_PIPE | Gio.SubprocessFlags.STDERR_PIPE)
        launcher.set_environ([f"{k}={v}" for k, v in bridge.engine_environment().items()])
        try:
            proc = launcher.spawnv(argv)
        except GLib.Error as exc:
            self.label.set_text(f"Cannot estimate: {exc.message}")
            return
        proc.communicate_utf8_async(None, self.cancellable, self.finished, argv)

    def finished(self, proc, result, argv):
        try:
            _, out, err = proc.communicate_utf8_finish(result)
        except GLib.Error:
            return  # cancelled: a newer estimate is on its way
        if argv != self.key:
            return
        try:
            self.estimate = bridge.parse_estimate(out or "")
            self.label.set_text(bridge.describe_estimate(self.estimate))
        except bridge.BridgeError as exc:
            tail = [ln for ln in (err or "").splitlines() if ln.strip()]
            self.label.set_text(f"Cannot estimate: {bridge.one_line(tail[-1]) if tail else exc}")

    def current(self):
        """The estimate for the settings as they are now (waits for it if needed); None if unknown."""
        if self.engine is None:
            return None
        request = self.request()
        argv = bridge.sandbox_argv(bridge.build_estimate_argv(self.engine.python, request))
        if argv == self.key and self.estimate is not None:
            return self.estimate
        try:
            return bridge.estimate_run(self.engine, request)
        except bridge.BridgeError:
            return None


def confirm_long_run(parent, estimate):
    """Ask before a run estimated over bridge.LONG_RUN_S; True to go ahead."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    dialog = Gtk.MessageDialog(transient_for=parent, modal=True, message_type=Gtk.MessageType.QUESTION,
                               buttons=Gtk.ButtonsType.NONE,
                               text=f"This run will take about {bridge.format_duration(estimate.seconds)}")
    dialog.format_secondary_text(bridge.describe_estimate(estimate) + "\n\nA GPU, the Preview quality or a "
                                 "smaller selection is faster. Start anyway?")
    dialog.add_buttons("_Back", Gtk.ResponseType.CANCEL, "_Start", Gtk.ResponseType.OK)
    try:
        return dialog.run() == Gtk.ResponseType.OK
    finally:
        dialog.destroy()


class ChoicesView:
    """The dialog's Preset and Style loss lists: the engine's names, plug-ins' included.

    GIMP 3.0 fixes a Choice argument's items when the procedure is registered (a plug-in's query
    at GIMP's start, redone only when the plug-in's file changes) and answers a value outside them
    with its own "value out of range" calling error. So ``preset`` and ``style-loss`` are string
    arguments (a script can pass any name; an unknown one gets the engine's one-line error), and
    the dialog shows them as these two lists, filled when the dialog opens: first the built-in
    names, then, from ``nst list json`` run in the background (bridge.build_list_argv, 2-5 s), the
    engine's own, so a plug-in installed after ``nst gimp install`` appears without installing
    the filter again. When the engine cannot be asked, the built-in names stay, with one line
    saying why; a broken plug-in is named once, here, instead of after every run.
    """

    PROPERTIES = (("preset", "_Preset"), ("style-loss", "Style _loss"))

    def __init__(self, config):
        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        self.config = config
        self.filling = False
        self.problems = ()
        self.items = {}  # (property, name) -> the help shown as the list's tooltip
        self.cancellable = None
        self.grid = Gtk.Grid(row_spacing=4, column_spacing=8)
        self.combos, self.labels = {}, []
        for row, (prop, text) in enumerate(self.PROPERTIES):
            label = Gtk.Label.new_with_mnemonic(text)
            label.set_xalign(0.0)
            combo = Gtk.ComboBoxText()
            combo.set_hexpand(True)
            label.set_mnemonic_widget(combo)
            combo.connect("changed", self.changed, prop)
            self.grid.attach(label, 0, row, 1, 1)
            self.grid.attach(combo, 1, row, 1, 1)
            self.combos[prop] = combo
            self.labels.append(label)
        self.status = Gtk.Label(label="Asking the engine for its presets and style losses (plug-ins too)\u2026")
        self.status.set_xalign(0.0)
        self.status.set_line_wrap(True)
        self.status.set_margin_bottom(6)
        self.grid.attach(self.status, 0, len(self.PROPERTIES), 2, 1)
        self.final = False
        self.names = {}  # property -> the names the engine (or the built-in list) offers
        builtin = bridge.fallback_choices("")
        self.fill(bridge.EngineChoices(builtin.presets, builtin.style_losses), final=False)
        config.connect("notify", self.config_changed)  # Reset and Load Saved Settings change the config

    def fill(self, choices, final=True):
        """Show ``choices`` and select the config's values."""
        self.final = final
        for prop, names in (("preset", choices.dialog_presets()), ("style-loss", choices.style_losses)):
            self.names[prop] = [name.name for name in names]
            self.filling = True
            try:
                self.combos[prop].remove_all()
                for name in names:
                    self.combos[prop].append(name.name, name.label)
                    self.items[(prop, name.name)] = name.help
            finally:
                self.filling = False
            self.select(prop)
        if final:
            self.problems = choices.problems
            self.status.set_text(choices.status())
            self.status.set_visible(bool(choices.status()))

    def select(self, prop):
        """Select the config's value of ``prop``; a name the engine does not list is added, marked,
        so that the run says what is wrong with it."""
        combo, current = self.combos[prop], (self.config.get_property(prop) or "").strip()
        self.filling = True
        try:
            if current and current not in self.names[prop]:
                self.names[prop].append(current)
                combo.append(current, f"{current} (not known to the engine)" if self.final else current)
            combo.set_active_id(current or None)
            combo.set_tooltip_text(self.items.get((prop, current)) or None)
        finally:
            self.filling = False

    def config_changed(self, config, pspec):
        if pspec.name in self.combos and not self.filling:
            self.select(pspec.name)

    def changed(self, combo, prop):
        name = combo.get_active_id()
        if self.filling or name is None:
            return
        combo.set_tooltip_text(self.items.get((prop, name)) or None)
        if name != self.config.get_property(prop):
            self.config.set_property(prop, name)

    def refresh(self):
        """Ask the engine in the background (Gio.Subprocess: the dialog stays responsive)."""
        try:
            engine = bridge.find_engine(PLUGIN_DIR)
        except bridge.BridgeError as exc:
            self.fill(bridge.fallback_choices(str(exc)))
            return
        argv = bridge.sandbox_argv(bridge.build_list_argv(engine.python))
        launcher = Gio.SubprocessLauncher.new(Gio.SubprocessFlags.STDOUT_PIPE | Gio.SubprocessFlags.STDERR_PIPE)
        launcher.set_environ([f"{k}={v}" for k, v in bridge.engine_environment().items()])
        try:
            proc = launcher.spawnv(argv)
        except GLib.Error as exc:
            self.fill(bridge.fallback_choices(f"cannot start the engine's Python {engine.python!r} ({exc.message})"))
            return
        self.cancellable = Gio.Cancellable()
        proc.communicate_utf8_async(None, self.cancellable, self.finished)

    def finished(self, proc, result):
        try:
            _, out, err = proc.communicate_utf8_finish(result)
        except GLib.Error:
            return  # the dialog was closed
        code = proc.get_exit_status() if proc.get_if_exited() else None
        self.fill(bridge.choices_from_output(code, out or "", err or ""))


def align_labels(dialog, prop, labels):
    """Line ``labels`` up with the label of the dialog's own widget for ``prop`` (cosmetic: any
    failure leaves them where they are)."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    try:
        widget = dialog.get_widget(prop, GObject.TYPE_NONE)  # the widget fill() already made
        group = Gtk.SizeGroup(mode=Gtk.SizeGroupMode.HORIZONTAL)
        group.add_widget(widget.get_label())
        for label in labels:
            group.add_widget(label)
        dialog.nst_label_group = group  # kept alive with the dialog
    except Exception:  # noqa: BLE001 - a layout nicety must never stop the filter
        pass


def show_dialog(procedure, config, image, drawable):
    """The generated procedure dialog with the engine's presets and style losses and the run's
    estimate; GIMP stores the values for the next run. ``(ok, known_problems)``: ok on OK (after
    confirming a long run), and the plug-in problems the dialog showed."""
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init(PROC_NAME)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, TITLE)
    dialog.get_scale_entry("strength", 1.0)  # sliders instead of bare spin buttons
    dialog.get_scale_entry("style-scale", 1.0).set_logarithmic(True)  # 1.0 in the middle of 0.25-4
    dialog.fill_box("advanced-box", ["size", "steps", "seed", "device"])
    dialog.get_label("advanced-label", "Advanced (0 = the quality's value)", False, False)
    dialog.fill_frame("advanced", "advanced-label", False, "advanced-box")
    label = dialog.get_label("estimate-text", "", False, False)
    label.set_xalign(0.0)
    label.set_line_wrap(True)
    dialog.get_label("estimate-title", "This run", False, False)
    dialog.fill_frame("estimate", "estimate-title", False, "estimate-text")
    # The preset and style-loss lists are Gtk widgets of our own (see ChoicesView), packed into a
    # box the dialog made around a placeholder label, so they sit where the layout puts that box.
    placeholder = dialog.get_label("engine-names-placeholder", "", False, False)
    dialog.fill_box("engine-names", ["engine-names-placeholder"])
    dialog.fill(["style-file", "style-layer", "quality", "engine-names", "estimate", "strength", "style-scale",
                 "preserve-color", "advanced"])
    choices = ChoicesView(config)
    align_labels(dialog, "quality", choices.labels)
    box = placeholder.get_parent()
    box.pack_start(choices.grid, False, False, 0)
    box.reorder_child(choices.grid, 0)
    placeholder.hide()
    choices.grid.show_all()
    choices.status.set_visible(bool(choices.status.get_text()))
    choices.refresh()
    view = EstimateView(label, config, image, drawable)
    config.connect("notify", view.refresh)
    view.refresh()
    try:
        while dialog.run():
            estimate = view.current()
            if estimate is None or not estimate.long or confirm_long_run(dialog, estimate):
                return True, choices.problems
        return False, ()
    finally:
        for cancellable in (view.cancellable, choices.cancellable):
            if cancellable is not None:
                cancellable.cancel()
        dialog.destroy()


def error_values(procedure, status, message):
    return procedure.new_return_values(status, GLib.Error(message))


def run(procedure, run_mode, image, drawables, config, data):
    bridge.become_group_leader()
    if len(drawables) != 1:
        return error_values(procedure, Gimp.PDBStatusType.CALLING_ERROR,
                            f"{TITLE} works on exactly one layer; {len(drawables)} are selected")
    drawable = drawables[0]
    if not isinstance(drawable, Gimp.Layer) or drawable.is_group() or drawable.is_floating_sel():
        return error_values(procedure, Gimp.PDBStatusType.CALLING_ERROR,
                            f"{TITLE} works on a normal layer (not a layer group, mask, channel or "
                            "floating selection); select one in the Layers dialog")
    known_problems = ()
    if run_mode == Gimp.RunMode.INTERACTIVE:
        ok, known_problems = show_dialog(procedure, config, image, drawable)
        if not ok:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    try:
        layer = stylize(image, drawable, config, run_mode, known_problems)
    except (UserError, bridge.BridgeError) as exc:
        return error_values(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, str(exc))
    except Exception as exc:  # a bug: say so in one line, keep the traceback on stderr
        traceback.print_exc()
        return error_values(procedure, Gimp.PDBStatusType.EXECUTION_ERROR,
                            f"{TITLE}: internal error in the plug-in ({type(exc).__name__}: {exc}); "
                            "please report it with GIMP's error console output")
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    values.remove(1)
    values.insert(1, GObject.Value(Gimp.Layer, layer))
    return values


def _choice(items):
    choice = Gimp.Choice.new()
    for index, (nick, label, help_text) in enumerate(items):
        choice.add(nick, index, label, help_text)
    return choice


class NeuralStyleTransfer(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [PROC_NAME]

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("_Neural Style Transfer...")
        procedure.add_menu_path("<Image>/Filters/Artistic")
        procedure.set_documentation(
            "Repaint the layer in the style of a painting (neural style transfer)",
            "Stylises the active layer with a style image (Gatys et al. 2015) using the nst-core engine, "
            "which runs as a separate process. The result is a new layer above the source, at the "
            "layer's full size by default, limited to the selection (the style fades out across a "
            "margin around it); the source is not changed. Style strength is logarithmic: 50 keeps the "
            "engine's style weight, every 25 points multiplies it by 10. Style scale sets the size "
            "of the brush strokes.",
            name)
        procedure.set_attribution("nst-core developers", "nst-core developers, MIT licence", "2025")
        procedure.add_file_argument("style-file", "Style _image", "The painting whose style is applied",
                                    Gimp.FileChooserAction.OPEN, True, None, RW)
        # For scripts: GIMP checks an OPEN file argument before the plug-in runs and answers a
        # missing file with a generic "value out of range" (and with FileChooserAction.ANY the
        # dialog shows no file chooser at all), so a plain path, which GIMP does not check, lets
        # the filter say "style image not found: PATH". Not shown in the dialog.
        procedure.add_string_argument("style-path", "Style image path",
                                      "For scripts: the style image's path; overrides style-file, and a "
                                      "missing file gets the filter's own message", "", RW)
        procedure.add_layer_argument("style-layer", "Or style la_yer",
                                     "An open layer to use as the style image instead of the file",
                                     True, RW)
        procedure.add_choice_argument(
            "quality", "_Quality", "What the result is at the layer's real size",
            _choice([(name, q.label, q.help) for name, q in bridge.QUALITIES.items()]),
            bridge.DEFAULT_QUALITY, RW)
        # Strings, not Choices: see ChoicesView (the dialog shows them as lists of the engine's names)
        procedure.add_string_argument("preset", "Preset",
                                      "An engine preset ('nst list presets', plug-ins' too) or 'none'; it sets "
                                      "the look, the quality sets the size and steps", bridge.PRESET_NONE, RW)
        procedure.add_string_argument("style-loss", "Style loss",
                                      "The style loss term ('nst list losses', role style; plug-ins' too)",
                                      bridge.DEFAULT_STYLE_LOSS, RW)
        procedure.add_double_argument("strength", "Style stre_ngth",
                                      "0-100, logarithmic: 50 = the engine's default style weight, "
                                      "+25 = 10x more style, -25 = 10x less",
                                      0.0, 100.0, bridge.STRENGTH_DEFAULT, RW)
        procedure.add_double_argument("style-scale", "Style sc_ale (brush size)",
                                      "Size of the style image relative to the working size: "
                                      "above 1 gives larger brush strokes, below 1 finer ones",
                                      *bridge.STYLE_SCALE_RANGE, bridge.STYLE_SCALE_DEFAULT, RW)
        procedure.add_choice_argument(
            "preserve-color", "Keep colo_urs", "Keep the layer's own colours and take only the style's texture",
            _choice([("none", "No: take the painting's colours", ""),
                     ("luminance", "Yes: style only the brightness", "Gatys et al. 2016, luminance-only transfer"),
                     ("histogram", "Yes: recolour the painting first",
                      "Match the style image's colours to the layer")]),
            "none", RW)
        procedure.add_int_argument("size", "_Working size limit",
                                   "Largest side the engine works at, in pixels (0 = the quality's: 512 for "
                                   "Preview, the layer's own size for Full size); below the layer's size the "
                                   "result is scaled up to it", 0, 65536, 0, RW)
        procedure.add_int_argument("steps", "Ste_ps",
                                   "Optimiser steps at the coarsest scale; each larger scale runs fewer "
                                   "(0 = the quality's)", 0, 100000, 0, RW)
        procedure.add_int_argument("seed", "S_eed", "Random seed: the same seed gives the same result",
                                   0, 2**31 - 1, 0, RW)
        procedure.add_choice_argument(
            "device", "_Device", "Where the engine computes",
            _choice([("auto", "Automatic (GPU if available)", ""), ("cpu", "CPU", ""),
                     ("cuda", "NVIDIA GPU (CUDA)", ""), ("mps", "Apple GPU (MPS)", "")]),
            "auto", RW)
        procedure.add_layer_return_value("layer", "Layer", "The new stylised layer", False, RW)
        return procedure


if __name__ == "__main__":
    Gimp.main(NeuralStyleTransfer.__gtype__, sys.argv)
