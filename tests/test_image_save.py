"""save_image: the right pixels in the right format, atomically, or one clear line and nothing written.

Write failures are real ones, not mocks: a folder the (unprivileged) user cannot write, a file-size
limit (RLIMIT_FSIZE: the kernel fails the write half-way), a full tmpfs and a read-only mount in a
private mount namespace (where ``unshare`` and ``mount`` are allowed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image
import pytest
import torch

from nst_core.errors import ImageError
from nst_core.image import FORMATS, read_image, save_image
from helpers import as_unprivileged_user
from image_writers import gray_profile

ROOT = Path(__file__).resolve().parents[1]


def noise(h: int = 12, w: int = 17, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part") or p.name.startswith("."))


def save_refused(image, path, match: str = "", **options) -> str:
    with pytest.raises(ImageError) as info:
        save_image(image, path, **options)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and match.lower() in message.lower(), message
    return message


# ------------------------------------------------------------------------------- round trips


def test_png_and_tiff_are_exact(tmp_path):
    image = noise()
    for name in ("x.png", "x.tif", "x.tiff"):
        assert save_image(image, tmp_path / name) == tmp_path / name
        with Image.open(tmp_path / name) as im:
            assert im.mode == "RGB" and im.size == (17, 12)
            assert np.array_equal(np.asarray(im), (image[0].permute(1, 2, 0) * 255).round().byte().numpy())
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name,tolerance", [("x.jpg", 12), ("x.jpeg", 12), ("x.webp", 16)])
def test_lossy_formats_are_close(tmp_path, name, tolerance):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 48), indexing="ij")
    image = torch.stack([xx, yy, (xx + yy) / 2])[None]
    save_image(image, tmp_path / name)
    back = read_image(tmp_path / name).rgb
    assert (back - image).abs().max() * 255 <= tolerance


@pytest.mark.parametrize("name,exact", [("a.png", True), ("a.tif", True), ("a.webp", False)])
def test_alpha_is_written(tmp_path, name, exact):
    alpha = torch.linspace(0, 1, 12 * 17).reshape(1, 1, 12, 17)
    save_image(noise(), tmp_path / name, alpha=alpha)
    with Image.open(tmp_path / name) as im:
        assert im.mode == "RGBA"
        stored = np.asarray(im.getchannel("A"), dtype=np.float64)
    error = np.abs(stored - (alpha[0, 0] * 255).round().numpy()).max()
    assert error == 0 if exact else error <= 2


def test_jpeg_drops_alpha(tmp_path):
    save_image(noise(), tmp_path / "a.jpg", alpha=torch.zeros(1, 1, 12, 17))
    with Image.open(tmp_path / "a.jpg") as im:
        assert im.mode == "RGB"


def test_alpha_of_another_size_is_resized(tmp_path):
    alpha = torch.zeros(1, 1, 4, 4)
    alpha[..., :, 2:] = 1
    save_image(torch.full((1, 3, 8, 8), 0.5), tmp_path / "a.png", alpha=alpha)
    with Image.open(tmp_path / "a.png") as im:
        a = np.asarray(im.getchannel("A"))
    assert a.shape == (8, 8) and a[:, 0].max() == 0 and a[:, -1].min() == 255


def test_replaces_an_existing_file_and_keeps_its_permissions(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    save_image(noise(), target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert leftovers(tmp_path) == []


def test_new_file_gets_the_usual_permissions(tmp_path):
    """Not the 0600 of a temporary file: 0666 minus the umask, like any other program's output."""
    umask = os.umask(0o022)
    os.umask(umask)
    save_image(noise(), tmp_path / "new.png")
    assert (tmp_path / "new.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_relative_path_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_image(noise(), "here.png")
    assert (tmp_path / "here.png").is_file()


def test_pil_image_is_saved_as_is(tmp_path):
    im = Image.new("RGBA", (3, 2), (10, 20, 30, 40))
    save_image(im, tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as back:
        assert back.mode == "RGBA" and back.getpixel((0, 0)) == (10, 20, 30, 40)


def test_values_are_clipped_not_wrapped(tmp_path):
    image = torch.tensor([-0.5, 0.5, 1.5]).reshape(1, 3, 1, 1)
    save_image(image, tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as im:
        assert im.getpixel((0, 0)) == (0, 128, 255)


# ---------------------------------------------------------------------------------- refused


@pytest.mark.parametrize("name", ["out.gif", "out.bmp", "out", "out.PNG.txt"])
def test_unknown_extension(tmp_path, name):
    message = save_refused(noise(), tmp_path / name, match="unknown image extension")
    assert all(ext in message for ext in FORMATS)
    assert list(tmp_path.iterdir()) == []


def test_upper_case_extension_is_fine(tmp_path):
    save_image(noise(), tmp_path / "OUT.PNG")
    assert (tmp_path / "OUT.PNG").is_file()


def test_missing_folder(tmp_path):
    save_refused(noise(), tmp_path / "no" / "such" / "out.png", match="does not exist")
    assert list(tmp_path.iterdir()) == []


def test_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    save_refused(noise(), tmp_path / "file" / "out.png", match="is not a folder")


def test_target_is_a_folder(tmp_path):
    (tmp_path / "out.png").mkdir()
    save_refused(noise(), tmp_path / "out.png", match="is a folder")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_is_never_written(tmp_path, bad):
    image = noise()
    image[0, 1, 3, 4] = bad
    (tmp_path / "out.png").write_bytes(b"old")
    save_refused(image, tmp_path / "out.png", match="NaN or infinite")
    assert (tmp_path / "out.png").read_bytes() == b"old" and leftovers(tmp_path) == []
    alpha = torch.ones(1, 1, 12, 17)
    alpha[..., 0, 0] = bad
    save_refused(noise(), tmp_path / "out.png", match="NaN or infinite", alpha=alpha)


@pytest.mark.parametrize("shape", [(1, 4, 5, 5), (2, 3, 5, 5), (5, 5), (1, 3, 0, 4)])
def test_wrong_shape(tmp_path, shape):
    save_refused(torch.zeros(shape), tmp_path / "out.png", match="must be (1, 3, H, W)")


@pytest.mark.parametrize("quality", [-1, 101, 9.5, True])
def test_bad_quality(tmp_path, quality):
    save_refused(noise(), tmp_path / "out.jpg", match="quality", quality=quality)


@pytest.mark.parametrize("name,side", [("wide.webp", 16384), ("wide.jpg", 65501)])
def test_too_large_for_the_format_is_refused_before_writing(tmp_path, capfd, name, side):
    message = save_refused(torch.zeros(1, 3, 1, side), tmp_path / name, match="cannot store an image")
    assert ".png" in message and list(tmp_path.iterdir()) == []
    assert capfd.readouterr().err == ""  # libjpeg prints its complaint to stderr; we never call it


def test_encoder_refusal_leaves_nothing_and_keeps_the_old_file(tmp_path):
    """Pillow refuses to encode a CMYK image as PNG after the temporary file exists."""
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    save_refused(Image.new("CMYK", (4, 4)), target, match="cannot write mode CMYK as PNG")
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_invalid_icc_profile(tmp_path):
    save_refused(noise(), tmp_path / "out.png", match="not a valid ICC profile", icc_profile=b"garbage" * 20)
    save_refused(noise(), tmp_path / "out.png", match="not RGB", icc_profile=gray_profile(1.0))
    assert list(tmp_path.iterdir()) == []


def test_permission_denied(shared_dir):  # noqa: F811 - the fixture
    target = shared_dir / "out.png"
    target.write_bytes(b"old")
    target.chmod(0o644)
    if os.geteuid() != 0:
        shared_dir.chmod(0o555)
    try:
        with as_unprivileged_user():
            with pytest.raises(PermissionError):  # the situation is real
                (shared_dir / "probe").touch()
            message = save_refused(noise(), target, match="permission denied")
    finally:
        shared_dir.chmod(0o755)
    assert "nothing was written" in message
    assert target.read_bytes() == b"old" and leftovers(shared_dir) == []


SCRIPT_PRELUDE = """
import json, os, sys
import torch
from nst_core.errors import ImageError
from nst_core.image import save_image

def attempt(folder):
    target = os.path.join(folder, "out.png")
    with open(target, "wb") as handle:
        handle.write(b"old picture")
    image = torch.rand(1, 3, 400, 400, generator=torch.Generator().manual_seed(0))  # about 480 kB as PNG
    try:
        save_image(image, target)
        message = "written"
    except ImageError as exc:
        message = str(exc)
    with open(target, "rb") as handle:
        old = handle.read() == b"old picture"
    return {"message": message, "files": sorted(os.listdir(folder)), "old_intact": old}
"""


def run_script(body: str, *args: str, prefix: list[str] | None = None) -> dict:
    script = textwrap.dedent(SCRIPT_PRELUDE) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*(prefix or []), sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_write_failing_half_way_leaves_nothing_and_keeps_the_old_file(tmp_path):
    """RLIMIT_FSIZE makes the kernel fail a write half-way (EFBIG), as a full disk would."""
    result = run_script("""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        print(json.dumps(attempt(sys.argv[1])))
    """, str(tmp_path))
    assert result["message"].startswith(str(tmp_path / "out.png") + ": could not write it (File too large)")
    assert "nothing was written" in result["message"]
    assert result["files"] == ["out.png"] and result["old_intact"]


def _namespace_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        pytest.skip("needs util-linux unshare (Linux)")
    probe = subprocess.run([unshare, "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private mount namespace here: {probe.stderr.decode().strip()}")
    return [unshare, "--mount", "--"]


def test_disk_full_and_read_only_file_system(tmp_path):
    """A 200 kB tmpfs (a real ENOSPC) and then the same tmpfs remounted read-only (EROFS), in a
    private mount namespace that disappears with the process."""
    prefix = _namespace_prefix()
    result = run_script("""
        import subprocess
        folder = sys.argv[1]
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", folder], check=True)
        full = attempt(folder)
        subprocess.run(["mount", "-o", "remount,ro", folder], check=True)
        try:
            save_image(torch.zeros(1, 3, 4, 4), os.path.join(folder, "new.png"))
            read_only = "written"
        except ImageError as exc:
            read_only = str(exc)
        print(json.dumps({"full": full, "read_only": read_only, "after": sorted(os.listdir(folder))}))
    """, str(tmp_path), prefix=prefix)
    full = result["full"]
    assert full["message"] == f"{tmp_path / 'out.png'}: no space left on the device; free some space or choose " \
                              f"another folder; nothing was written"
    assert full["files"] == ["out.png"] and full["old_intact"]
    assert "read-only file system" in result["read_only"] and result["after"] == ["out.png"]
    assert list(tmp_path.iterdir()) == []  # the mount never touched the real folder
