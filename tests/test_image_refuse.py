"""Bad image files are refused with one line that names the file and says what to do.

Never a traceback from Pillow, never a warning, never a hang, never a half-decoded picture from a
file that was cut short.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
import struct
import threading
import warnings

import numpy as np
from PIL import Image
import pytest

from nst_core.errors import ConfigError, ImageError, NSTError
from nst_core.image import DEFAULT_MAX_IMAGE_PIXELS, MAX_PIXELS_ENV, read_image
from helpers import as_unprivileged_user
from image_writers import png_chunk, write_png


@pytest.fixture(autouse=True)
def _no_warnings_escape():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def refused(path, *, match: str = "") -> str:
    """The message of the ImageError ``read_image(path)`` raises, checked to be one line naming the file."""
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{path}: "), message
    assert match.lower() in message.lower(), message
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    return message


def jpeg_bytes(width: int = 96, height: int = 64, **options) -> bytes:
    yy, xx = np.mgrid[0:height, 0:width]
    data = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 255 // (width + height)], -1)
    buffer = io.BytesIO()
    Image.fromarray(data.astype(np.uint8)).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


# -------------------------------------------------------------------------------- not a file


def test_missing_file(tmp_path):
    refused(tmp_path / "nope.png", match="no such file")


def test_broken_symlink(tmp_path):
    (tmp_path / "link.png").symlink_to(tmp_path / "gone.png")
    refused(tmp_path / "link.png", match="no such file")


def test_directory(tmp_path):
    (tmp_path / "folder.png").mkdir()
    refused(tmp_path / "folder.png", match="folder")


def test_unreadable_file(shared_dir):
    path = shared_dir / "secret.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    with as_unprivileged_user():
        with pytest.raises(PermissionError):  # the situation is real, not simulated
            path.open("rb")
        message = refused(path, match="permission denied")
    assert "chmod" in message


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    refused(tmp_path / "empty.jpg", match="empty (0 bytes)")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_named_pipe_does_not_hang(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read():
        try:
            read_image(fifo)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "read_image blocked on a named pipe"
    assert isinstance(outcome[0], ImageError) and "not a regular file" in str(outcome[0])


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero on this system")
def test_device_file():
    refused(Path("/dev/zero"), match="not a regular file")


# ------------------------------------------------------------------------------ not an image


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("shopping list: milk, eggs\n")
    refused(tmp_path / "notes.png", match="text, not image data")


@pytest.mark.parametrize("head,match", [
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "HEIC"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF"),
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "SVG"),
    (bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)), "not an image format Pillow can read"),
])
def test_formats_pillow_cannot_read(tmp_path, head, match):
    (tmp_path / "picture.jpg").write_bytes(head)
    refused(tmp_path / "picture.jpg", match=match)


def test_eps_is_refused_before_ghostscript_could_run(tmp_path):
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "drawing.eps")
    message = refused(tmp_path / "drawing.eps", match="Ghostscript")
    assert "PNG" in message


# ------------------------------------------------------------------------- truncated, damaged


def test_every_truncation_of_a_jpeg_is_refused(tmp_path):
    """Cut a baseline and a progressive JPEG at every length: each cut is refused (never a
    half-grey picture). ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False."""
    for name, data in (("base.jpg", jpeg_bytes()), ("prog.jpg", jpeg_bytes(progressive=True))):
        path = tmp_path / name
        for cut in range(1, len(data), 3):
            path.write_bytes(data[:cut])
            refused(path)
        path.write_bytes(data)
        assert read_image(path).size == (96, 64)


def test_truncated_jpeg_message(tmp_path):
    data = jpeg_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    message = refused(tmp_path / "half.jpg", match="truncated")
    assert "again" in message


def test_jpeg_cut_and_resealed_is_decoded_not_crashed(tmp_path):
    """A JPEG whose scan was cut but which ends with an end-of-image marker is indistinguishable
    from a valid one for Pillow (libjpeg's warning is not exposed): it decodes, the missing part
    filled in by libjpeg. Documented limit; the result is still a valid image."""
    data = jpeg_bytes()
    (tmp_path / "resealed.jpg").write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    rgb = read_image(tmp_path / "resealed.jpg").rgb
    assert rgb.shape == (1, 3, 64, 96) and rgb.isfinite().all() and 0 <= rgb.min() and rgb.max() <= 1


def test_every_truncation_of_a_png_is_refused_or_complete(tmp_path):
    """Cut a PNG at every length: refused while pixel data is missing; once every pixel is there
    (only the zlib checksum, the chunk CRC or IEND are cut) the pixels are exact, never partial."""
    samples = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    data = write_png(tmp_path / "full.png", samples, 2, 8).read_bytes()
    idat_end = data.index(b"IEND") - 4  # the IEND chunk starts with its 4-byte length
    path = tmp_path / "cut.png"
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        if cut < idat_end - 8:  # before the 4-byte Adler-32 and the 4-byte CRC that end IDAT
            refused(path)
            continue
        try:
            rgb = read_image(path).rgb
        except ImageError:
            continue
        assert np.array_equal(np.round(rgb[0].permute(1, 2, 0).numpy() * 255), samples), cut


def test_png_with_a_damaged_pixel_chunk(tmp_path):
    samples = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    data = bytearray(write_png(tmp_path / "x.png", samples, 2, 8).read_bytes())
    data[data.index(b"IDAT") + 40] ^= 0xFF
    (tmp_path / "x.png").write_bytes(bytes(data))
    refused(tmp_path / "x.png", match="damaged")


def test_truncated_gif_and_webp(tmp_path):
    for name, options in (("a.gif", {}), ("a.webp", {"lossless": True})):
        buffer = io.BytesIO()
        noise = np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(noise).save(buffer, name.split(".")[1].upper(), **options)
        data = buffer.getvalue()
        (tmp_path / name).write_bytes(data[: len(data) * 2 // 3])
        refused(tmp_path / name)


# ----------------------------------------------------------------------- decompression bombs


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds no pixel data at all."""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + png_chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(jpeg_bytes(16, 16))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (4, 4)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, "TIFF")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    image.load()
    out = io.BytesIO()
    image.save(out, "TIFF")
    data = bytearray(out.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack("<HH", data[entry:entry + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            data[entry + 8: entry + 12] = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
    return bytes(data)


@pytest.mark.parametrize("name,make", [("bomb.png", lambda: png_header_only(100_000, 100_000)),
                                       ("bomb.jpg", lambda: jpeg_declaring(65_000, 65_000)),
                                       ("bomb.gif", lambda: gif_declaring(65_000, 65_000)),
                                       ("bomb.tif", lambda: tiff_declaring(60_000, 60_000))])
def test_decompression_bomb_refused_from_the_header(tmp_path, name, make):
    """The files hold (almost) no pixel data: being refused for their size, not for being
    truncated, shows the check runs on the header, before decoding."""
    (tmp_path / name).write_bytes(make())
    message = refused(tmp_path / name, match="decompression bomb")
    assert f"{DEFAULT_MAX_IMAGE_PIXELS:,}" in message and f"{MAX_PIXELS_ENV}=" in message
    assert "0 = no limit" in message


def test_bomb_message_gives_the_declared_size(tmp_path):
    (tmp_path / "big.png").write_bytes(png_header_only(100_000, 90_000))
    assert "100000 x 90000 = 9,000,000,000 pixels" in refused(tmp_path / "big.png")


def test_the_limit_comes_from_the_environment(tmp_path, monkeypatch):
    Image.new("RGB", (50, 50), (0, 128, 255)).save(tmp_path / "x.png")  # 2500 pixels
    monkeypatch.setenv(MAX_PIXELS_ENV, "2000")
    message = refused(tmp_path / "x.png", match="50 x 50 = 2,500 pixels")
    assert "limit of 2,000" in message
    monkeypatch.setenv(MAX_PIXELS_ENV, "2_500")
    assert read_image(tmp_path / "x.png").size == (50, 50)
    monkeypatch.setenv(MAX_PIXELS_ENV, "0")
    assert read_image(tmp_path / "x.png").size == (50, 50)


def test_a_limit_above_pillows_own_is_honoured(tmp_path, monkeypatch):
    """With Pillow's global limit lowered (as an application might), a file above it but under
    NST_MAX_IMAGE_PIXELS is read, with no DecompressionBombWarning/Error escaping."""
    Image.new("RGB", (100, 100), (9, 9, 9)).save(tmp_path / "x.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "20000")
    assert np.allclose(read_image(tmp_path / "x.png").rgb.numpy(), 9 / 255)
    monkeypatch.setenv(MAX_PIXELS_ENV, "0")
    assert read_image(tmp_path / "x.png").size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 1000


@pytest.mark.parametrize("value", ["lots", "-5", "1.5", "nan"])
def test_a_bad_limit_in_the_environment(tmp_path, monkeypatch, value):
    Image.new("RGB", (2, 2)).save(tmp_path / "x.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, value)
    with pytest.raises(ConfigError, match=MAX_PIXELS_ENV) as info:
        read_image(tmp_path / "x.png")
    assert isinstance(info.value, NSTError) and "0 for no limit" in str(info.value)


def test_large_but_allowed_dimensions_are_read(tmp_path):
    Image.new("RGB", (10_000, 10), (0, 255, 0)).save(tmp_path / "thin.png")
    assert read_image(tmp_path / "thin.png").size == (10_000, 10)
