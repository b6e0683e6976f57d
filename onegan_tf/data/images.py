"""Crop geometry and pixel conversions shared by the TFDS and folder pipelines.

Boxes are in pixels, (ymin, xmin, ymax, xmax) with max exclusive; windows are (y0, x0, side)
squares. All functions are TensorFlow ops on one example, so they run inside `Dataset.map`.
"""

from __future__ import annotations

import tensorflow as tf

OBJECT_CROP_SCALE = 1.5  # FineGAN: square side = 1.5 x the larger bbox side
MAX_PATCHES_PER_STRIP = 2  # background patches per free strip beside the bbox
BACKGROUND_STRIPS = 4  # left, right, above, below the bbox


def normalized_box_to_pixels(box, height, width):
    """[4] (ymin, xmin, ymax, xmax) in [0, 1] -> float32 pixel box, sorted and clipped.

    Coordinates are sorted per axis (min > max happens in mock data) and clipped to the image.
    The box grows to whole pixels (floor of the mins, ceil of the maxes) so that a patch that
    avoids it avoids every pixel the object touches.
    """
    box = tf.clip_by_value(tf.cast(box, tf.float32), 0.0, 1.0)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    ymin, ymax = tf.minimum(box[0], box[2]) * h, tf.maximum(box[0], box[2]) * h
    xmin, xmax = tf.minimum(box[1], box[3]) * w, tf.maximum(box[1], box[3]) * w
    eps = 1e-3  # float32 noise of normalized coordinates must not grow the box by a pixel
    return tf.stack([tf.floor(ymin + eps), tf.floor(xmin + eps),
                     tf.math.ceil(ymax - eps), tf.math.ceil(xmax - eps)])


def box_is_valid(box_px):
    """True when a pixel box covers at least one pixel in each direction."""
    return tf.logical_and(box_px[2] - box_px[0] >= 1.0, box_px[3] - box_px[1] >= 1.0)


def largest_box(boxes):
    """[N, 4] normalized boxes -> the one with the largest area (after sorting min/max)."""
    boxes = tf.clip_by_value(tf.cast(boxes, tf.float32), 0.0, 1.0)
    area = tf.abs(boxes[:, 2] - boxes[:, 0]) * tf.abs(boxes[:, 3] - boxes[:, 1])
    return tf.gather(boxes, tf.argmax(area))


def union_box(boxes):
    """[N, 4] normalized boxes -> the smallest box holding all of them (after sorting)."""
    boxes = tf.clip_by_value(tf.cast(boxes, tf.float32), 0.0, 1.0)
    y0 = tf.minimum(boxes[:, 0], boxes[:, 2])
    x0 = tf.minimum(boxes[:, 1], boxes[:, 3])
    y1 = tf.maximum(boxes[:, 0], boxes[:, 2])
    x1 = tf.maximum(boxes[:, 1], boxes[:, 3])
    return tf.stack([tf.reduce_min(y0), tf.reduce_min(x0), tf.reduce_max(y1), tf.reduce_max(x1)])


def object_window(box_px, height, width):
    """The FineGAN crop: int32 (y0, x0, side) of a square around a pixel box.

    side = 1.5 x the larger box side, at most the image's longer side. The square is centred on
    the box, then shifted to lie inside the image along each axis where it fits; along an axis
    shorter than the side it stays centred on the box and `crop_square` repeats edge pixels.
    """
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    size = tf.maximum(box_px[2] - box_px[0], box_px[3] - box_px[1])
    side = tf.maximum(tf.round(tf.minimum(OBJECT_CROP_SCALE * size, tf.maximum(h, w))), 1.0)

    def place(lo, hi, extent):
        start = tf.round((lo + hi) / 2.0 - side / 2.0)
        inside = tf.clip_by_value(start, 0.0, tf.maximum(extent - side, 0.0))
        return tf.where(side <= extent, inside, start)

    y0 = place(box_px[0], box_px[2], h)
    x0 = place(box_px[1], box_px[3], w)
    return tf.cast(tf.stack([y0, x0, side]), tf.int32)


def background_windows(box_px, height, width, min_side):
    """Square patches that do not touch the box: int32 [K, 3] (y0, x0, side), K in [0, 8].

    Rule: the box leaves four free strips (left of, right of, above and below it; an
    axis-aligned square that misses the box lies wholly in one of them). Each strip gives
    squares whose side is the strip's short side: one centred along the strip, or two (one at
    each end) when the strip is at least twice as long as it is wide. Squares with a side below
    `min_side` pixels are dropped, so a tightly cropped photo gives no patch at all.
    """
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    ymin, xmin, ymax, xmax = box_px[0], box_px[1], box_px[2], box_px[3]
    zero = tf.zeros([])
    # (top, left, strip height, strip width) of left, right, above, below.
    strips = tf.stack([
        tf.stack([zero, zero, h, xmin]),
        tf.stack([zero, xmax, h, w - xmax]),
        tf.stack([zero, zero, ymin, w]),
        tf.stack([ymax, zero, h - ymax, w]),
    ])
    top, left, sh, sw = strips[:, 0], strips[:, 1], strips[:, 2], strips[:, 3]
    side = tf.floor(tf.maximum(tf.minimum(sh, sw), 0.0))
    long_side = tf.maximum(sh, sw)
    count = tf.where(side >= tf.maximum(tf.cast(min_side, tf.float32), 1.0),
                     tf.minimum(tf.floor(long_side / tf.maximum(side, 1.0)),
                                float(MAX_PATCHES_PER_STRIP)), 0.0)
    vertical = sh >= sw  # the strip runs top to bottom; squares move along y
    slack = tf.floor(long_side - side)  # room along the strip's long axis
    windows, valid = [], []
    for slot in range(MAX_PATCHES_PER_STRIP):
        # count 1: centred; count 2: slot 0 at the start, slot 1 at the end.
        offset = tf.where(count >= 2.0, slack * float(slot), tf.floor(slack / 2.0))
        across = tf.floor((tf.minimum(sh, sw) - side) / 2.0)
        y0 = top + tf.where(vertical, offset, across)
        x0 = left + tf.where(vertical, across, offset)
        windows.append(tf.stack([y0, x0, side], axis=1))
        valid.append(count > float(slot))
    windows = tf.concat(windows, axis=0)
    return tf.cast(tf.boolean_mask(windows, tf.concat(valid, axis=0)), tf.int32)


def crop_square(image, window):
    """[H, W, C] -> [side, side, C]; pixels outside the image repeat the nearest edge pixel."""
    y0, x0, side = window[0], window[1], window[2]
    shape = tf.shape(image)
    rows = tf.clip_by_value(tf.range(y0, y0 + side), 0, shape[0] - 1)
    cols = tf.clip_by_value(tf.range(x0, x0 + side), 0, shape[1] - 1)
    return tf.gather(tf.gather(image, rows, axis=0), cols, axis=1)


def resize_uint8(image, size):
    """Any-size uint8 [H, W, C] -> uint8 [size, size, C], antialiased bilinear."""
    resized = tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def crop_mask(mask, image_height, image_width, window, size):
    """Ground-truth mask of any size -> float32 {0, 1} [size, size, 1], cropped like its image.

    The mask (uint8 0-255, or float in [0, 1]) is first resized to the image's size, so masks
    stored at another resolution line up; it is thresholded once, at the end (> 0.5 of full
    scale, i.e. > 127 for uint8).
    """
    scale = 255.0 if mask.dtype == tf.uint8 else 1.0
    mask = tf.cast(mask, tf.float32) / scale
    mask = tf.image.resize(mask, tf.stack([image_height, image_width]))
    mask = tf.image.resize(crop_square(mask, window), [size, size], antialias=True)
    return tf.cast(mask > 0.5, tf.float32)


def to_model_range(image):
    """uint8 [..., 3] -> float32 in [-1, 1]."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0
