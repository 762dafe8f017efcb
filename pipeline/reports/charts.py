"""Small charts as PNG images, drawn in pure Python (zlib for the compression, nothing else).

A report needs a sparkline per score and a bar of time in glucose ranges: a few hundred pixels
each, which a plotting library would draw no better at a hundred times the install.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

Colour = tuple[int, int, int]

WHITE: Colour = (255, 255, 255)
GRID: Colour = (226, 230, 236)
LINE: Colour = (37, 99, 235)
LAST: Colour = (220, 38, 38)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Canvas:
    """An RGB image, origin at the top left."""

    def __init__(self, width: int, height: int, background: Colour = WHITE) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def dot(self, x: int, y: int, colour: Colour, radius: int = 0) -> None:
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                px, py = x + dx, y + dy
                if 0 <= px < self.width and 0 <= py < self.height and dx * dx + dy * dy <= radius * radius:
                    at = (py * self.width + px) * 3
                    self.pixels[at : at + 3] = bytes(colour)

    def line(self, x0: int, y0: int, x1: int, y1: int, colour: Colour, radius: int = 0) -> None:
        """Bresenham's line, each point a dot of ``radius``."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        error = dx + dy
        while True:
            self.dot(x0, y0, colour, radius)
            if x0 == x1 and y0 == y1:
                return
            doubled = 2 * error
            if doubled >= dy:
                error, x0 = error + dy, x0 + sx
            if doubled <= dx:
                error, y0 = error + dx, y0 + sy

    def rect(self, x0: int, y0: int, x1: int, y1: int, colour: Colour) -> None:
        """Fill [x0, x1) × [y0, y1)."""
        row = bytes(colour) * max(0, min(x1, self.width) - max(x0, 0))
        for y in range(max(y0, 0), min(y1, self.height)):
            at = (y * self.width + max(x0, 0)) * 3
            self.pixels[at : at + len(row)] = row

    def png(self) -> bytes:
        stride = self.width * 3
        raw = b"".join(b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def sparkline(
    values: Sequence[float | None], *, low: float = 0.0, high: float = 100.0, width: int = 280, height: int = 64
) -> bytes:
    """A line through ``values`` (None: a day without one, bridged) on [low, high], with grid lines
    at the quarters and the last value marked; an empty series draws only the grid."""
    canvas, pad = Canvas(width, height), 4
    for quarter in range(5):
        y = pad + round((height - 2 * pad - 1) * quarter / 4)
        canvas.line(0, y, width - 1, y, GRID)
    span = max(high - low, 1e-9)
    step = (width - 2 * pad - 1) / max(len(values) - 1, 1)
    points = [
        (pad + round(i * step), pad + round((height - 2 * pad - 1) * (1 - (min(max(v, low), high) - low) / span)))
        for i, v in enumerate(values)
        if v is not None
    ]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        canvas.line(x0, y0, x1, y1, LINE, radius=1)
    if points:
        canvas.dot(*points[-1], LAST, radius=3)
    return canvas.png()


def stacked_bar(parts: Sequence[tuple[float, Colour]], *, width: int = 280, height: int = 18) -> bytes:
    """One bar split in proportion to ``parts`` (their shares need not add up to exactly 100)."""
    canvas = Canvas(width, height)
    total = sum(max(share, 0.0) for share, _ in parts) or 1.0
    x = 0.0
    for share, colour in parts:
        end = x + width * max(share, 0.0) / total
        canvas.rect(round(x), 0, round(end), height, colour)
        x = end
    return canvas.png()
