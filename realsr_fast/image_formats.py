"""What `realsr upscale` can write: the --format choices and the default JPEG / WebP quality.

Light on purpose (no numpy, no Pillow): the CLI reads these for its help without importing the
image stack; `realsr_fast.io`, which writes the files, imports them from here.
"""
from __future__ import annotations

#: `realsr upscale --format` choices and the suffix each writes.
OUTPUT_FORMATS: dict[str, str] = {
    "png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif", "bmp": ".bmp",
}
#: JPEG and WebP quality when none is given (`write_image(quality=)`, `realsr upscale --quality`).
DEFAULT_QUALITY = 95
