"""Runs INSIDE GIMP 3 for make-docs-images.sh (python-fu-eval exec()s it; Gimp, Gio... are imported).

NST_DOCS_MODE=dialog (GUI GIMP under Xvfb): open the photo in a window and call the plug-in
INTERACTIVELY, so its dialog shows; the shell script takes the screenshot and closes the dialog.
NST_DOCS_MODE=result (gimp-console): stylise the photo for real and save the new layer as PNG.
"""

import os

OUT = os.environ["NST_E2E_OUT"]
MODE = os.environ.get("NST_DOCS_MODE", "dialog")
procedure = Gimp.get_pdb().lookup_procedure("python-fu-nst-style-transfer")
if procedure is None:
    raise RuntimeError("python-fu-nst-style-transfer is not registered")

image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.path.join(OUT, "photo.png")))
layer = image.get_layers()[0]
config = procedure.create_config()
config.set_property("image", image)
config.set_core_object_array("drawables", [layer])
config.set_property("style-file", Gio.File.new_for_path(os.path.join(OUT, "starry_night.jpg")))

if MODE == "dialog":
    # NST_DOCS_PRESET / NST_DOCS_STYLE_LOSS: show the dialog with these chosen (a plug-in's name is
    # shown with its distribution only once the engine has listed it)
    for key, name in (("preset", "NST_DOCS_PRESET"), ("style-loss", "NST_DOCS_STYLE_LOSS")):
        if os.environ.get(name):
            config.set_property(key, os.environ[name])
    Gimp.Display.new(image)
    Gimp.displays_flush()
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    procedure.run(config)
else:
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("seed", 1)
    for key, value in (("size", int(os.environ.get("NST_DOCS_SIZE", "0"))),
                       ("steps", int(os.environ.get("NST_DOCS_STEPS", "0")))):
        config.set_property(key, value)
    values = procedure.run(config)
    if values.index(0) != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError(f"the plug-in failed: {values.index(1)}")
    result = values.index(1)
    export = Gimp.Image.new(image.get_width(), image.get_height(), Gimp.ImageBaseType.RGB)
    copy = Gimp.Layer.new_from_drawable(result, export)
    export.insert_layer(copy, None, 0)
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, export, Gio.File.new_for_path(os.path.join(OUT, "result.png")), None)
    export.delete()
    image.delete()
