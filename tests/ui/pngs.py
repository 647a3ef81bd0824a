"""A small PNG reader for tests: 8-bit RGB/RGBA, every filter type, CRCs checked."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import numpy.typing as npt

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == SIGNATURE, "not a PNG"
    out: list[tuple[bytes, bytes]] = []
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind!r}"
        out.append((kind, body))
        pos += 12 + length
    return out


def size(data: bytes) -> tuple[int, int]:
    kind, body = chunks(data)[0]
    assert kind == b"IHDR"
    width, height = struct.unpack(">II", body[:8])
    return int(width), int(height)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode(data: bytes) -> npt.NDArray[np.uint8]:
    """(height, width, 3) RGB pixels of an 8-bit RGB or RGBA PNG."""
    parts = chunks(data)
    width, height = size(data)
    ihdr = parts[0][1]
    depth, color = ihdr[8], ihdr[9]
    assert depth == 8, f"unsupported bit depth {depth}"
    assert color in (2, 6), f"unsupported colour type {color}"
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in parts if kind == b"IDAT"))
    stride = width * bpp
    rows = np.zeros((height, stride), dtype=np.uint8)
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + _paeth(a, b, c)) & 0xFF
        rows[y] = np.frombuffer(bytes(line), dtype=np.uint8)
        prev = line
    pixels = rows.reshape(height, width, bpp)
    return pixels[:, :, :3]


def count(pixels: npt.NDArray[np.uint8], color: tuple[int, int, int]) -> int:
    return int(np.all(pixels == np.array(color, dtype=np.uint8), axis=2).sum())


def texts(data: bytes) -> dict[str, str]:
    """The PNG's text chunks: tEXt (Latin-1) and uncompressed iTXt (UTF-8), by keyword."""
    out: dict[str, str] = {}
    for kind, body in chunks(data):
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            assert rest[0] == 0, "compressed iTXt is not read here"
            _language, _, rest = rest[2:].partition(b"\0")
            _translated, _, value = rest.partition(b"\0")
            out[key.decode("latin-1")] = value.decode("utf-8")
    return out
