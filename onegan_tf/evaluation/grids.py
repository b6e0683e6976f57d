"""Sample grids laid out as the paper's figures, written as PNG and TensorBoard images.

Fig. 3 (generation): rows = final image, foreground, mask, background; one column per code.
Fig. 4 (reconstruction): rows = real image, reconstruction, foreground, background,
ground-truth mask (when known), predicted mask.
Fig. 6 (translation): rows = real images; columns = the input then one per target child code.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from onegan_tf.fileio import atomic_write


def to_uint8(images, value_range=(-1.0, 1.0)) -> np.ndarray:
    """[..., H, W, C] float in value_range -> uint8 [..., H, W, 3] (masks are repeated to RGB)."""
    images = np.asarray(images, dtype=np.float32)
    low, high = value_range
    images = np.clip((images - low) / (high - low), 0.0, 1.0)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return (images * 255.0 + 0.5).astype(np.uint8)


def tile(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """rows: list of uint8 [N, H, W, 3] (same N, H, W) -> one uint8 image [R*(H+pad), ...].

    Cells smaller than 64 px are enlarged (nearest neighbour) so that grids are readable.
    """
    scale = max(1, 64 // rows[0].shape[1])
    rows = [np.repeat(np.repeat(r, scale, axis=1), scale, axis=2) for r in rows]
    n, h, w, _ = rows[0].shape
    canvas = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c in range(n):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            canvas[y:y + h, x:x + w] = row[c]
    return canvas


def generation_grid(out: dict) -> np.ndarray:
    """Fig. 3 from AutoEncoder.generate outputs."""
    return tile([to_uint8(out["image"]), to_uint8(out["foreground"]),
                 to_uint8(out["mask"], (0.0, 1.0)), to_uint8(out["background"])])


def reconstruction_grid(images, out: dict, true_masks=None) -> np.ndarray:
    """Fig. 4 from real images and AutoEncoder.reconstruct outputs."""
    rows = [to_uint8(images), to_uint8(out["image"]), to_uint8(out["foreground"]),
            to_uint8(out["background"])]
    if true_masks is not None:
        rows.append(to_uint8(true_masks, (0.0, 1.0)))
    rows.append(to_uint8(out["mask"], (0.0, 1.0)))
    return tile(rows)


def translation_grid(images, translations: list) -> np.ndarray:
    """Fig. 6: one row per input image; columns = input, then each target child's image."""
    columns = [to_uint8(images)] + [to_uint8(t) for t in translations]
    stacked = np.stack(columns, axis=1)  # [N, 1 + K, H, W, 3]: one row per input image
    return tile(list(stacked))


def save_png(path, grid: np.ndarray) -> bytes:
    """Encodes and returns the PNG bytes (callers write them atomically)."""
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    data = buffer.getvalue()
    if path is not None:
        atomic_write(path, data)
    return data
