"""Sample uploads made in memory: real images and PDFs, and broken ones."""

from __future__ import annotations

import io
import struct
import zlib

from fpdf import FPDF
from PIL import Image


def image(fmt: str = "PNG", size: tuple[int, int] = (640, 480), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color=0).save(buffer, format=fmt)
    return buffer.getvalue()


def pdf(pages: int = 3, text: str = "EventForge") -> bytes:
    document = FPDF()
    for number in range(1, pages + 1):
        document.add_page()
        document.set_font("Helvetica", size=14)
        document.cell(text=f"{text} page {number}")
    return bytes(document.output())


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int) -> bytes:
    """A PNG declaring a size with almost no pixel data: a decompression bomb's cheap stand-in
    (Pillow checks the size at open, before any decoding)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
EXECUTABLE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 84
