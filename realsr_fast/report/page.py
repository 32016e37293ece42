"""Self-contained HTML pages: inline CSS and script, images embedded as base64 PNG data URIs.

The machinery of every report the package writes (the demo's, `realsr adapt`'s, the comparison
page of :mod:`realsr_fast.report.compare_page`).

A page is a title and a list of :class:`Section`; a section's body is a list of HTML blocks
made by the helpers here (:func:`paragraph`, :func:`bullets`, :func:`table`, :func:`gallery`,
:func:`compare`, :func:`bar_chart`, :func:`side_by_side`). Texts are escaped; in them `` `x` `` becomes code and
``**x**`` bold (how the winning score is highlighted). :class:`Html` marks markup made here
(:func:`link`) that must not be escaped again.

Images are `(H, W)` or `(H, W, 3)` uint8 arrays, embedded at their own resolution and shown at
a whole-number magnification without smoothing (`image-rendering: pixelated`), so every source
pixel covers the same number of screen pixels; a figure may take a smaller whole-number
magnification on narrow screens (phones). The page has no horizontal scroll at 390 px: galleries
wrap, tables scroll inside their own box.

Example:
    >>> section = Section("kernels", "Kernels", [paragraph("One per photo."),
    ...                   gallery([Figure(kernel_image(kernel), "astronaut", scale=5)])])
    >>> write_report("out/report.html", "RealSR demo", [section])
"""
from __future__ import annotations

import base64
import html
import io
import os
import re
from dataclasses import dataclass, field
from typing import Sequence
from urllib.parse import quote

import numpy as np
from PIL import Image

from realsr_fast.io import atomic_write

NARROW_PX = 600
"""Viewports at most this wide (phones) use each figure's `narrow_scale`."""

STYLE = f"""
* {{ box-sizing: border-box; }}
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 24px 48px; color: #1d1d1f; background: #fafafa; line-height: 1.45; overflow-wrap: break-word; }}
h1 {{ margin: 28px 0 4px; }} .subtitle {{ color: #555; margin: 0 0 12px; }}
nav {{ margin: 12px 0 20px; display: flex; flex-wrap: wrap; gap: 4px 14px; }}
nav a, a {{ color: #0b5cad; }} nav a {{ text-decoration: none; }}
section {{ background: #fff; border: 1px solid #e2e2e2; border-radius: 8px; padding: 4px 20px 16px; margin: 18px 0; }}
h2 {{ border-bottom: 1px solid #eee; padding-bottom: 4px; }}
h3 {{ margin: 18px 0 4px; font-size: 1.0em; }}
.gallery {{ display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; margin: 8px 0 14px; }}
figure {{ margin: 0; }}
.frame {{ position: relative; display: inline-block; line-height: 0; }}
.frame img {{ display: block; width: var(--w); height: auto; image-rendering: pixelated; outline: 1px solid #ccc;
             background: #000; }}
.mark {{ position: absolute; border: 2px solid #ffd400; outline: 1px solid #000; pointer-events: none; }}
figcaption {{ font-size: 0.8em; color: #444; margin-top: 3px; white-space: pre-line; max-width: var(--w); }}
.scroll {{ overflow-x: auto; max-width: 100%; margin: 8px 0 12px; }}
table {{ border-collapse: collapse; font-size: 0.92em; }}
th, td {{ border: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
th {{ background: #f0f0f0; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
tr.total td {{ font-weight: 600; background: #f7f7f7; }}
strong.best, td strong {{ color: #0a6b2d; }}
.note {{ color: #7a4b00; background: #fff6e0; border-left: 3px solid #f0b400; padding: 6px 10px; }}
code {{ background: #f1f1f1; padding: 1px 4px; border-radius: 3px; }}
.compare {{ margin: 4px 0 14px; }}
.layers {{ position: relative; line-height: 0; touch-action: none; cursor: ew-resize; border: 1px solid #ccc; }}
.layers img {{ position: absolute; inset: 0; width: 100%; height: 100%; image-rendering: pixelated; user-select: none;
               -webkit-user-drag: none; }}
.layers img.right {{ clip-path: inset(0 0 0 var(--split)); }}
.divider {{ position: absolute; top: 0; bottom: 0; left: var(--split); width: 2px; margin-left: -1px;
            background: #fff; box-shadow: 0 0 2px #000; }}
.tag {{ position: absolute; top: 4px; line-height: 1.3; font-size: 0.75em; background: rgba(0, 0, 0, 0.6);
        color: #fff; padding: 1px 5px; border-radius: 3px; }}
.tag.left {{ left: 4px; }} .tag.right {{ right: 4px; }}
.controls {{ display: flex; flex-wrap: wrap; gap: 6px 10px; align-items: center; margin-top: 6px; font-size: 0.85em; }}
.controls input[type=range] {{ flex: 1 1 120px; }}
.bars {{ display: grid; grid-template-columns: minmax(5em, max-content) minmax(60px, 1fr) max-content;
         gap: 4px 10px; align-items: center; margin: 8px 0 14px; font-size: 0.9em; }}
.track {{ position: relative; height: 14px; background: #f2f2f2; }}
.bar {{ position: absolute; top: 0; bottom: 0; background: #3b7dd8; }}
.bar.neg {{ background: #d8593b; }} .bar.pos {{ background: #3b9d5d; }}
.zero {{ position: absolute; top: -3px; bottom: -3px; left: 50%; width: 1px; background: #555; }}
.value {{ font-variant-numeric: tabular-nums; text-align: right; }}
.bars .detail {{ grid-column: 1 / -1; color: #666; font-size: 0.85em; margin: -4px 0 4px; }}
.side {{ display: flex; flex-wrap: wrap; gap: 4px 24px; align-items: flex-start; }}
.side .gallery {{ display: grid; grid-template-columns: repeat(2, max-content); }}
@media (max-width: {NARROW_PX}px) {{
  body {{ padding: 0 8px 32px; }} section {{ padding: 2px 10px 12px; }}
  .frame img {{ width: var(--n, var(--w)); }} figcaption {{ max-width: max(var(--n, var(--w)), 7em); }}
  .gallery {{ gap: 8px; }}
}}
"""

SCRIPT = """
for (const box of document.querySelectorAll('.compare')) {
  const layers = box.querySelector('.layers');
  const images = layers.querySelectorAll('img');
  const [left, right] = box.querySelectorAll('select');
  const split = box.querySelector('input[type=range]');
  const show = () => {
    images.forEach((img, i) => {
      img.hidden = i !== +left.value && i !== +right.value;
      img.classList.toggle('right', i === +right.value);
    });
    layers.querySelector('.tag.left').textContent = left.selectedOptions[0].text;
    layers.querySelector('.tag.right').textContent = right.selectedOptions[0].text;
    box.style.setProperty('--split', split.value + '%');
  };
  const drag = (event) => {
    if (!event.buttons) return;
    const rect = layers.getBoundingClientRect();
    split.value = Math.round(100 * (event.clientX - rect.left) / rect.width);
    show();
  };
  for (const control of [left, right, split]) control.addEventListener('input', show);
  layers.addEventListener('pointerdown', (event) => {
    layers.setPointerCapture(event.pointerId);  // keep following a drag that leaves the image
    drag(event);
  });
  layers.addEventListener('pointermove', drag);
  box.querySelector('button').addEventListener('click', () => {
    [left.value, right.value] = [right.value, left.value];
    show();
  });
  show();
}
"""
"""The comparison sliders' behaviour; without script each shows its two default layers at 50 %."""


class Html(str):
    """Markup made by this module: inserted as is, never escaped again."""


@dataclass
class Box:
    """A rectangle in image pixels: top-left `(y, x)` and size `(h, w)`."""

    y: int
    x: int
    h: int
    w: int


@dataclass
class Figure:
    """An image with a caption, shown `scale` times its size (`narrow_scale` on phones), with boxes marked."""

    image: np.ndarray
    caption: str
    scale: int = 1
    narrow_scale: int | None = None
    marks: Sequence[Box] = ()


@dataclass
class Layer:
    """One image of a :func:`compare` slider, shown `scale` times its size."""

    label: str
    image: np.ndarray
    scale: int


@dataclass
class Bar:
    """One row of a :func:`bar_chart`: a label, the value drawn, the text beside it and a line under it."""

    label: str
    value: float
    text: str
    detail: str = ""


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


def inline(text: str) -> str:
    """Escaped text with `` `code` `` and ``**bold**`` rendered; :class:`Html` passes through."""
    if isinstance(text, Html):
        return text
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*(.+?)\*\*", r'<strong class="best">\1</strong>', escaped)


def link(href: str, label: str) -> Html:
    """A link to `href`, a path relative to the report (kept relative, so the folder can move)."""
    return Html(f'<a href="{html.escape(quote(href))}">{html.escape(label)}</a>')


def paragraph(text: str, note: bool = False) -> str:
    """A paragraph of text (see :func:`inline`); `note` sets it off as a warning-coloured box."""
    opening = '<p class="note">' if note else "<p>"
    return f"{opening}{inline(text)}</p>"


def bullets(items: Sequence[str]) -> str:
    """A bulleted list of text items (see :func:`inline`)."""
    return "<ul>" + "".join(f"<li>{inline(item)}</li>" for item in items) + "</ul>"


def heading(text: str) -> str:
    """A sub-heading inside a section."""
    return f"<h3>{inline(text)}</h3>"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], total: Sequence[object] | None = None) -> str:
    """A table of values (floats should arrive formatted) in a box that scrolls sideways when too wide.

    `total` is a last, bold row. Cells that read as numbers (``**0.81**`` and ``+1.2`` too) are
    right-aligned.
    """
    def cells(values: Sequence[object], tag: str) -> str:
        return "".join(f"{opening(tag, value)}{inline(str(value))}</{tag}>" for value in values)

    def opening(tag: str, value: object) -> str:
        return '<td class="num">' if tag == "td" and _is_number(value) else f"<{tag}>"

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    if total is not None:
        body += f'<tr class="total">{cells(total, "td")}</tr>'
    return f'<div class="scroll"><table><thead><tr>{cells(headers, "th")}</tr></thead><tbody>{body}</tbody></table></div>'


def _is_number(value: object) -> bool:
    try:
        float(str(value).strip("*"))
    except ValueError:
        return False
    return True


def _image_tag(image: np.ndarray, alt: str, scale: int, attributes: str = "") -> str:
    """An `<img>` of the image with its size magnified `scale` times as width and height."""
    height, width = image.shape[:2]
    return (f'<img src="{png_data_uri(image)}" width="{width * scale}" height="{height * scale}" '
            f'alt="{html.escape(alt)}"{attributes}>')


def _size_style(image: np.ndarray, scale: int, narrow_scale: int | None) -> str:
    """CSS variables of a figure's displayed width: --w, and --n on narrow screens."""
    if scale < 1 or (narrow_scale is not None and narrow_scale < 1):
        raise ValueError(f"magnifications must be whole numbers >= 1, got {scale} and {narrow_scale}")
    width = image.shape[1]
    return f"--w: {width * scale}px" + (f"; --n: {width * narrow_scale}px" if narrow_scale else "")


def _mark(box: Box, shape: tuple[int, ...]) -> str:
    top, left = 100 * box.y / shape[0], 100 * box.x / shape[1]
    height, width = 100 * box.h / shape[0], 100 * box.w / shape[1]
    return (f'<span class="mark" style="top: {top:.3f}%; left: {left:.3f}%; height: {height:.3f}%; '
            f'width: {width:.3f}%"></span>')


def gallery(figures: Sequence[Figure]) -> str:
    """Figures side by side, wrapping onto more rows when the page is narrow."""
    items = []
    for figure in figures:
        marks = "".join(_mark(box, figure.image.shape) for box in figure.marks)
        plain = figure.caption.replace("**", "")
        items.append(
            f'<figure style="{_size_style(figure.image, figure.scale, figure.narrow_scale)}"><div class="frame">'
            f'{_image_tag(figure.image, plain, figure.scale)}{marks}'
            f"</div><figcaption>{inline(figure.caption)}</figcaption></figure>"
        )
    return f'<div class="gallery">{"".join(items)}</div>'


def side_by_side(*blocks: str) -> str:
    """Blocks next to each other, wrapping under each other when narrow; a gallery in it is two figures wide."""
    return f'<div class="side">{"".join(blocks)}</div>'


def compare(layers: Sequence[Layer], left: int, right: int, caption: str = "") -> str:
    """A before/after slider over same-sized views: two chosen layers, split where the slider is.

    The reader picks the left and right layer (defaults `layers[left]`, `layers[right]`), drags
    the split over the image or with the slider, and swaps the sides with a button. Every layer
    must have the same displayed size (its size times its whole-number scale).

    Raises:
        ValueError: fewer than two layers, layers of different displayed sizes, or bad defaults.
    """
    sizes = {(layer.image.shape[0] * layer.scale, layer.image.shape[1] * layer.scale) for layer in layers}
    if len(layers) < 2 or len(sizes) != 1 or left == right or not (0 <= left < len(layers) and 0 <= right < len(layers)):
        raise ValueError(f"compare needs two distinct defaults among >= 2 layers of one displayed size, got {sizes}")
    height, width = sizes.pop()
    images = "".join(
        _image_tag(layer.image, layer.label, layer.scale, ' draggable="false"' + ("" if i in (left, right) else " hidden")
                   + (' class="right"' if i == right else ""))
        for i, layer in enumerate(layers)
    )

    def select(side: str, chosen: int) -> str:
        options = "".join(f'<option value="{i}"{" selected" if i == chosen else ""}>{html.escape(layer.label)}</option>'
                          for i, layer in enumerate(layers))
        return f'<label>{side} <select aria-label="{side} image">{options}</select></label>'

    tags = (f'<span class="tag left">{html.escape(layers[left].label)}</span>'
            f'<span class="tag right">{html.escape(layers[right].label)}</span>')
    return (
        f'<div class="compare" style="--split: 50%"><div class="layers" style="width: {width + 2}px; '
        f'height: {height + 2}px">{images}<span class="divider"></span>{tags}</div>'
        f'<div class="controls" style="max-width: {width + 2}px">{select("left", left)}'
        '<input type="range" min="0" max="100" value="50" aria-label="split position">'
        f'{select("right", right)}<button type="button">swap</button></div>'
        + (f'<figcaption style="--w: {width + 2}px">{inline(caption)}</figcaption>' if caption else "")
        + "</div>"
    )


def bar_chart(bars: Sequence[Bar], signed: bool = False) -> str:
    """Horizontal bars, lengths proportional to the values; `signed` draws them from a middle zero line.

    Positive values are green and negative red when signed.
    """
    largest = max((abs(bar.value) for bar in bars), default=0.0) or 1.0
    rows = []
    for bar in bars:
        if signed:
            length = 50 * abs(bar.value) / largest
            start = 50 if bar.value >= 0 else 50 - length
            shape = f'<span class="bar {"pos" if bar.value >= 0 else "neg"}" style="left: {start:.2f}%; width: {length:.2f}%"></span>'
            shape += '<span class="zero"></span>'
        else:
            shape = f'<span class="bar" style="left: 0; width: {100 * max(bar.value, 0) / largest:.2f}%"></span>'
        rows.append(f'<span class="label">{inline(bar.label)}</span><span class="track">{shape}</span>'
                    f'<span class="value">{inline(bar.text)}</span>')
        if bar.detail:
            rows.append(f'<span class="detail">{inline(bar.detail)}</span>')
    return f'<div class="bars">{"".join(rows)}</div>'


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
        f'<p class="subtitle">{inline(subtitle)}</p><nav>{nav}</nav>{"".join(parts)}'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_report(path: str | os.PathLike, title: str, sections: Sequence[Section], subtitle: str = "") -> None:
    """Render the report and write it to `path` atomically (UTF-8)."""
    with atomic_write(path, "w") as file:
        file.write(render_report(title, sections, subtitle))
