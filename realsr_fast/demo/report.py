"""Self-contained HTML reports: inline CSS, images embedded as base64 PNG data URIs, no scripts.

A report is a title and a list of :class:`Section`; a section's body is a list of HTML blocks
made by the helpers here (:func:`paragraph`, :func:`bullets`, :func:`table`, :func:`gallery`).
Every text goes through :func:`html.escape`. Images are `(H, W)` or `(H, W, 3)` uint8 arrays,
embedded at their own resolution and magnified by the browser without smoothing, so a 33x33
kernel or a 32x32 LR image shows its pixels.

Example:
    >>> section = Section("kernels", "Kernels", [paragraph("One per photo."),
    ...                   gallery([Figure(kernel_image, "astronaut", width=165)])])
    >>> write_report("out/report.html", "RealSR demo", [section])
"""
from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

from realsr_fast.io import atomic_write

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1150px;
       padding: 0 24px 48px; color: #1d1d1f; background: #fafafa; line-height: 1.45; }
h1 { margin: 28px 0 4px; } .subtitle { color: #555; margin: 0 0 12px; }
nav { margin: 12px 0 20px; } nav a { margin-right: 14px; color: #0b5cad; text-decoration: none; }
section { background: #fff; border: 1px solid #e2e2e2; border-radius: 8px; padding: 4px 20px 16px; margin: 18px 0; }
h2 { border-bottom: 1px solid #eee; padding-bottom: 4px; }
h3 { margin: 14px 0 4px; font-size: 1.0em; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; margin: 8px 0 14px; }
figure { margin: 0; text-align: center; }
figure img { display: block; image-rendering: pixelated; border: 1px solid #ccc; background: #000; }
figcaption { font-size: 0.8em; color: #444; margin-top: 3px; white-space: pre-line; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; background: #f7f7f7; }
.note { color: #7a4b00; background: #fff6e0; border-left: 3px solid #f0b400; padding: 6px 10px; }
code { background: #f1f1f1; padding: 1px 4px; border-radius: 3px; }
"""


@dataclass
class Figure:
    """An image with a caption; `width` is the displayed width in CSS pixels (default: its own)."""

    image: np.ndarray
    caption: str
    width: int | None = None


@dataclass
class Section:
    """A titled part of the report; `key` is its HTML id (the navigation links to it)."""

    key: str
    title: str
    body: list[str] = field(default_factory=list)


def png_data_uri(image: np.ndarray) -> str:
    """`(H, W)` or `(H, W, 3)` uint8 -> `data:image/png;base64,...`."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def paragraph(text: str, note: bool = False) -> str:
    """A paragraph of plain text; `note` sets it off as a warning-coloured box."""
    opening = '<p class="note">' if note else "<p>"
    return f"{opening}{html.escape(text)}</p>"


def bullets(items: Sequence[str]) -> str:
    """A bulleted list of plain-text items."""
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def heading(text: str) -> str:
    """A sub-heading inside a section."""
    return f"<h3>{html.escape(text)}</h3>"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], total: Sequence[object] | None = None) -> str:
    """A table of plain values (floats should arrive formatted); `total` is a last, bold row.

    Cells that read as numbers are right-aligned.
    """
    def cells(values: Sequence[object], tag: str) -> str:
        return "".join(f"{opening(tag, value)}{html.escape(str(value))}</{tag}>" for value in values)

    def opening(tag: str, value: object) -> str:
        return '<td class="num">' if tag == "td" and _is_number(value) else f"<{tag}>"

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    if total is not None:
        body += f'<tr class="total">{cells(total, "td")}</tr>'
    return f"<table><thead><tr>{cells(headers, 'th')}</tr></thead><tbody>{body}</tbody></table>"


def _is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def gallery(figures: Sequence[Figure]) -> str:
    """Figures side by side (wrapping onto more rows when the page is narrow)."""
    items = []
    for figure in figures:
        width = figure.width or figure.image.shape[1]
        height = round(width * figure.image.shape[0] / figure.image.shape[1])
        items.append(
            f'<figure style="width: {width}px"><img src="{png_data_uri(figure.image)}" width="{width}" height="{height}" '
            f'alt="{html.escape(figure.caption)}"><figcaption>{html.escape(figure.caption)}</figcaption></figure>'
        )
    return f'<div class="gallery">{"".join(items)}</div>'


def render_report(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The whole HTML document: title, navigation, then the sections in order."""
    nav = "".join(f'<a href="#{html.escape(s.key)}">{html.escape(s.title)}</a>' for s in sections)
    parts = [
        f'<section id="{html.escape(s.key)}"><h2>{html.escape(s.title)}</h2>{"".join(s.body)}</section>'
        for s in sections
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="subtitle">{html.escape(subtitle)}</p><nav>{nav}</nav>{"".join(parts)}</body></html>\n'
    )


def write_report(path: str | os.PathLike, title: str, sections: Sequence[Section], subtitle: str = "") -> None:
    """Render the report and write it to `path` atomically (UTF-8)."""
    with atomic_write(path, "w") as file:
        file.write(render_report(title, sections, subtitle))
