"""Hand-made image files for the image tests.

Pillow cannot write every file a user may bring (16-bit RGB PNG or TIFF, a PNG with filters of our
choosing, an Adobe RGB or Display P3 ICC profile), so these small writers follow the PNG, TIFF and
ICC specifications directly. test_image_writers.py checks each writer against Pillow's own decoder
where Pillow decodes exactly (8-bit data), so the other tests can trust the files.
"""

from __future__ import annotations

from pathlib import Path
import struct
import zlib

import numpy as np

# ----------------------------------------------------------------------------------------- PNG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _pack_rows(samples: np.ndarray, bit_depth: int) -> np.ndarray:
    """``(H, W, C)`` sample values -> ``(H, row_bytes)`` uint8 scanlines (without filter bytes)."""
    h = samples.shape[0]
    if bit_depth == 16:
        return np.frombuffer(samples.astype(">u2").tobytes(), np.uint8).reshape(h, -1)
    if bit_depth == 8:
        return samples.astype(np.uint8).reshape(h, -1)
    per_byte = 8 // bit_depth
    flat = samples.reshape(h, -1).astype(np.uint8)
    flat = np.pad(flat, ((0, 0), (0, (-flat.shape[1]) % per_byte))).reshape(h, -1, per_byte)
    shifts = np.array([8 - bit_depth * (i + 1) for i in range(per_byte)], np.uint8)
    return (flat << shifts).sum(axis=2).astype(np.uint8)


def png_filter(rows: np.ndarray, bpp: int, kind: int) -> np.ndarray:
    """PNG filter ``kind`` (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth) applied to raw scanlines."""
    r = rows.astype(np.int32)
    left = np.zeros_like(r)
    left[:, bpp:] = r[:, :-bpp]
    up = np.zeros_like(r)
    up[1:] = r[:-1]
    up_left = np.zeros_like(r)
    up_left[1:, bpp:] = r[:-1, :-bpp]
    if kind == 0:
        out = r
    elif kind == 1:
        out = r - left
    elif kind == 2:
        out = r - up
    elif kind == 3:
        out = r - (left + up) // 2
    else:
        p = left + up - up_left
        pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
        out = r - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    return (out % 256).astype(np.uint8)


def write_png(path: Path, samples: np.ndarray, color_type: int, bit_depth: int, *, filter_kind: int = 4,
              palette: np.ndarray | None = None, chunks: bytes = b"") -> Path:
    """Write ``samples`` ``(H, W, C)`` (values already at ``bit_depth``) as a PNG.

    ``color_type``: 0 gray, 2 RGB, 3 palette (``palette`` ``(N, 3)`` uint8), 4 gray+alpha, 6 RGBA.
    ``chunks`` go between IHDR and IDAT (tRNS, iCCP, eXIf ...).
    """
    if samples.ndim == 2:
        samples = samples[..., None]
    h, w, channels = samples.shape
    rows = _pack_rows(samples, bit_depth)
    bpp = max(1, channels * bit_depth // 8)
    filtered = png_filter(rows, bpp, filter_kind)
    data = np.concatenate([np.full((h, 1), filter_kind, np.uint8), filtered], axis=1).tobytes()
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    if palette is not None:
        header += png_chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    path = Path(path)
    path.write_bytes(PNG_SIGNATURE + header + chunks + png_chunk(b"IDAT", zlib.compress(data))
                     + png_chunk(b"IEND", b""))
    return path


def iccp_chunk(profile: bytes) -> bytes:
    """A PNG iCCP chunk embedding ``profile``."""
    return png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(profile))


# ---------------------------------------------------------------------------------------- TIFF


def write_tiff(path: Path, samples: np.ndarray, *, big_endian: bool = False, deflate: bool = False,
               extra_samples: int | None = None, orientation: int | None = None) -> Path:
    """Write ``samples`` ``(H, W, C)`` uint8 or uint16 as a one-strip chunky TIFF.

    ``C`` = 1 (gray) or 3/4 (RGB, RGBA with ``extra_samples`` 2 = unassociated alpha).
    """
    if samples.ndim == 2:
        samples = samples[..., None]
    e = ">" if big_endian else "<"
    h, w, c = samples.shape
    bits = samples.dtype.itemsize * 8
    data = samples.astype(e + ("u2" if bits == 16 else "u1")).tobytes()
    if deflate:
        data = zlib.compress(data)
    entries: list[tuple[int, int, int, object]] = [
        (256, 4, 1, w), (257, 4, 1, h), (258, 3, c, "bits"), (259, 3, 1, 8 if deflate else 1),
        (262, 3, 1, 2 if c >= 3 else 1), (273, 4, 1, "data")]
    if orientation is not None:
        entries.append((274, 3, 1, orientation))
    entries += [(277, 3, 1, c), (278, 4, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    if extra_samples is not None:
        entries.append((338, 3, 1, extra_samples))
    ifd_offset = 8
    bits_offset = ifd_offset + 2 + 12 * len(entries) + 4
    bits_bytes = struct.pack(e + "H" * c, *([bits] * c))
    out_of_line = bits_bytes if len(bits_bytes) > 4 else b""
    data_offset = bits_offset + len(out_of_line)
    out = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, ifd_offset) + struct.pack(e + "H", len(entries))
    for tag, kind, count, value in entries:
        if value == "bits":
            out += struct.pack(e + "HHI", tag, kind, count) + (
                struct.pack(e + "I", bits_offset) if out_of_line else bits_bytes.ljust(4, b"\0"))
        elif value == "data":
            out += struct.pack(e + "HHII", tag, kind, count, data_offset)
        elif kind == 3:
            out += struct.pack(e + "HHIH", tag, kind, count, value) + b"\0\0"
        else:
            out += struct.pack(e + "HHII", tag, kind, count, value)
    path = Path(path)
    path.write_bytes(out + struct.pack(e + "I", 0) + out_of_line + data)
    return path


# ----------------------------------------------------------------------------------------- ICC

D50 = np.array([0.9642, 1.0, 0.8249])
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
PRIMARIES = {
    "sRGB": ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)),
    "Adobe RGB (1998)": ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06)),
    "Display P3": ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)),
}
D65_XY = (0.3127, 0.3290)


def _xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def colorants_d50(name: str) -> np.ndarray:
    """3x3 matrix linear RGB -> XYZ (D50 PCS, Bradford-adapted from D65), as ICC rXYZ/gXYZ/bXYZ columns."""
    prim = np.stack([_xyz(p) for p in PRIMARIES[name]], axis=1)
    white = _xyz(D65_XY)
    rgb_to_xyz = prim * np.linalg.solve(prim, white)
    cone_src, cone_dst = BRADFORD @ white, BRADFORD @ D50
    adapt = np.linalg.inv(BRADFORD) @ np.diag(cone_dst / cone_src) @ BRADFORD
    return adapt @ rgb_to_xyz


def _s15(v: float) -> bytes:
    return struct.pack(">i", int(round(v * 65536)))


def _xyz_tag(v) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(c) for c in v)


def _desc_tag(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 8 + b"\0\0\0" + b"\0" * 67


def _gamma_tag(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, int(round(gamma * 256)))


SRGB_CURVE = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)


def _srgb_curve_tag() -> bytes:
    return b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(_s15(p) for p in SRGB_CURVE)


def _profile(space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, body = struct.pack(">I", len(tags)), b""
    for sig, data in tags:
        data = data + b"\0" * ((-len(data)) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = 128 + table_size + len(body)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntr" + space + b"XYZ "
              + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
              + b"".join(_s15(c) for c in D50) + b"\0" * 48)
    assert len(header) == 128
    return header + table + body


def rgb_profile(name: str, gamma: float | None) -> bytes:
    """An ICC v2 matrix/TRC display profile with ``name``'s primaries and a pure ``gamma`` curve
    (``None``: the sRGB curve). ``rgb_profile("Adobe RGB (1998)", 563 / 256)`` is Adobe RGB."""
    m = colorants_d50(name)
    curve = _gamma_tag(gamma) if gamma is not None else _srgb_curve_tag()
    return _profile(b"RGB ", [(b"desc", _desc_tag(f"{name} (test)")), (b"wtpt", _xyz_tag(D50)),
                              (b"rXYZ", _xyz_tag(m[:, 0])), (b"gXYZ", _xyz_tag(m[:, 1])),
                              (b"bXYZ", _xyz_tag(m[:, 2])), (b"rTRC", curve), (b"gTRC", curve),
                              (b"bTRC", curve)])


def gray_profile(gamma: float) -> bytes:
    """An ICC v2 gray display profile with a pure ``gamma`` curve (D50 white)."""
    return _profile(b"GRAY", [(b"desc", _desc_tag(f"Gray gamma {gamma:g} (test)")), (b"wtpt", _xyz_tag(D50)),
                              (b"kTRC", _gamma_tag(gamma))])


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def expected_srgb(values: np.ndarray, name: str, gamma: float | None) -> np.ndarray:
    """What ``values`` ``(..., 3)`` in [0, 1], encoded in profile ``rgb_profile(name, gamma)``, are in
    sRGB (relative colorimetric, independent of littleCMS)."""
    linear = values ** gamma if gamma is not None else srgb_decode(values)
    xyz = linear @ colorants_d50(name).T
    return srgb_encode(xyz @ np.linalg.inv(colorants_d50("sRGB")).T)


# --------------------------------------------------------------------------------------- tests
