"""A small line chart as PNG, in pure Python (zlib for the compression): /score's 30-day trend.

No text is drawn (no font to ship); the reply names the series by colour, and the axes are
fixed: 0 to 100 up, one column per day across, light rules at 25, 50 and 75.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence

WIDTH, HEIGHT, PAD = 600, 200, 10
BACKGROUND = (255, 255, 255)
RULE = (225, 225, 225)
# One colour per domain, named in the reply's legend.
COLOURS: dict[str, tuple[tuple[int, int, int], str]] = {
    "sleep": ((66, 99, 235), "blue"),
    "activity": ((46, 160, 67), "green"),
    "cardio": ((214, 51, 48), "red"),
    "recovery": ((156, 84, 214), "purple"),
    "glycemic": ((230, 140, 20), "orange"),
    "overall": ((40, 40, 40), "black"),
}
_OTHER = ((120, 120, 120), "grey")

Pixels = list[bytearray]


def colour_name(series: str) -> str:
    return COLOURS.get(series, _OTHER)[1]


def line_chart(series: Mapping[str, Sequence[float | None]], days: int) -> bytes:
    """A PNG of each series (values 0–100, one per day, oldest first, None for a gap) over
    ``days`` columns.  Gaps break the line; a lone point is drawn as a dot."""
    pixels = [bytearray(BACKGROUND * WIDTH) for _ in range(HEIGHT)]
    for level in (25, 50, 75):
        y = _y(level)
        for x in range(PAD, WIDTH - PAD):
            _set(pixels, x, y, RULE)
    for name, values in series.items():
        colour = COLOURS.get(name, _OTHER)[0]
        previous: tuple[int, int] | None = None
        for index, value in enumerate(values[-days:]):
            if value is None:
                previous = None
                continue
            point = (_x(index, days), _y(value))
            _dot(pixels, point, colour)
            if previous is not None:
                _line(pixels, previous, point, colour)
            previous = point
    return encode(pixels)


def _x(index: int, days: int) -> int:
    return PAD + round(index * (WIDTH - 2 * PAD - 1) / max(days - 1, 1))


def _y(value: float) -> int:
    clamped = min(max(value, 0.0), 100.0)
    return HEIGHT - PAD - 1 - round(clamped * (HEIGHT - 2 * PAD - 1) / 100)


def _set(pixels: Pixels, x: int, y: int, colour: tuple[int, int, int]) -> None:
    if 0 <= x < WIDTH and 0 <= y < HEIGHT:
        pixels[y][3 * x : 3 * x + 3] = bytes(colour)


def _dot(pixels: Pixels, point: tuple[int, int], colour: tuple[int, int, int]) -> None:
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            _set(pixels, point[0] + dx, point[1] + dy, colour)


def _line(pixels: Pixels, a: tuple[int, int], b: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """Bresenham, two pixels thick."""
    (x0, y0), (x1, y1) = a, b
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        _set(pixels, x0, y0, colour)
        _set(pixels, x0, y0 + 1, colour)
        if (x0, y0) == (x1, y1):
            return
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


def encode(pixels: Pixels) -> bytes:
    """8-bit RGB PNG (ISO/IEC 15948): signature, IHDR, one IDAT, IEND; filter 0 on every row."""
    height, width = len(pixels), len(pixels[0]) // 3
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
