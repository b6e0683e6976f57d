"""The scene of the built-in `clutter` dataset without its object: a textured background with
clutter, the light that falls on the whole scene and the camera's JPEG-like noise.

All functions are vectorised over a batch of examples, each with its own random numbers (`u`,
a [B, N] uniform vector laid out by `clutter.py`, and value-noise grids). Coordinates are
pixel centres in [-1, 1]^2 (`shapes._grid`), so a scene looks the same at any resolution except
for the camera noise, which lives on pixels as a camera's does.
"""

import math

import tensorflow as tf

from onegan_tf.data.shapes import _col, _grid, _hsv

# Background families (the parent's usual habitat, like birds on water). Each has a palette
# (two hues, saturation, value) and texture statistics: value-noise frequency (cells across the
# image), anisotropy along a preferred angle (streaks), persistence of the octaves (roughness)
# and luminance contrast. Palettes overlap on purpose: mean colour alone says little.
_FAMILY_FIELDS = ("hue_a", "hue_b", "saturation", "value", "frequency", "anisotropy", "angle",
                  "persistence", "contrast")
_FAMILIES = (
    (0.56, 0.47, 0.40, 0.52, 2.5, 4.0, 0.0, 0.40, 0.30),  # water: blue-teal, long streaks
    (0.26, 0.14, 0.45, 0.45, 4.0, 1.0, 0.0, 0.75, 0.50),  # foliage: green-olive, rough
    (0.10, 0.06, 0.32, 0.62, 7.0, 1.6, 60.0, 0.55, 0.25),  # sand: tan, fine grain
    (0.80, 0.95, 0.28, 0.48, 1.5, 1.0, 0.0, 0.35, 0.35),  # dusk: mauve, smooth blotches
    (0.58, 0.09, 0.12, 0.55, 3.0, 1.4, 120.0, 0.65, 0.45),  # rock: grey, rough, faint grain
    (0.02, 0.07, 0.42, 0.45, 3.5, 2.5, 90.0, 0.50, 0.35),  # brick: red-brown, streaks
)
MAX_FAMILIES = len(_FAMILIES)

NOISE_GRIDS = (8, 16, 32)  # value-noise octaves: grid sides; 2 channels (luminance, palette)
NOISE_CHANNELS = 2
NUM_GRID_VALUES = sum(g * g * NOISE_CHANNELS for g in NOISE_GRIDS)

NUM_BLOBS = 3  # distractor blobs (not objects), each present with _BLOB_PROBABILITY
NUM_LINES = 3  # distractor lines (twigs, cables), each present with _LINE_PROBABILITY
_BLOB_PROBABILITY = 0.75
_LINE_PROBABILITY = 0.7
_EDGE_PROBABILITY = 0.7  # a step edge (horizon, table edge) across the background

# Layout of a background's uniforms (its slice of the example vector, clutter.py): [0, 16)
# texture, palette and edge; then 12 per blob, 10 per line; last the edge's brightness.
_BLOB_UNIFORMS, _LINE_UNIFORMS = 12, 10
_EDGE_FACTOR = 16 + _BLOB_UNIFORMS * NUM_BLOBS + _LINE_UNIFORMS * NUM_LINES
NUM_UNIFORMS = _EDGE_FACTOR + 1
NUM_LIGHT_UNIFORMS = 6
JPEG_BLOCK = 8  # pixels; the camera noise is per block, as JPEG quantises 8x8 blocks
NUM_BLOCK_UNIFORMS = 4  # per block: luminance DC, AC amplitude, two AC frequencies


def family_of(index):
    """[B] int32 family -> dict of [B] float32 fields (_FAMILY_FIELDS)."""
    # (a constant built here, not at import: a TF op at import time would initialise the
    # eager context before MultiWorkerMirroredStrategy can configure collective ops)
    row = tf.gather(tf.constant(_FAMILIES, tf.float32), index)  # [families, fields]
    return {name: row[:, i] for i, name in enumerate(_FAMILY_FIELDS)}


def split_grids(values):
    """[B, NUM_GRID_VALUES] uniforms -> one [B, g, g, NOISE_CHANNELS] grid in [-1, 1] per octave."""
    grids, start = [], 0
    for g in NOISE_GRIDS:
        size = g * g * NOISE_CHANNELS
        grids.append(tf.reshape(values[:, start:start + size] * 2 - 1, [-1, g, g, NOISE_CHANNELS]))
        start += size
    return grids


def value_noise(grid, px, py):
    """Smooth value noise: grid [B, G, G, C], px, py [B, H, W] in grid cells (the grid wraps)
    -> [B, H, W, C], bilinear between cell corners with smoothstep weights."""
    shape = tf.shape(grid)
    g, channels = shape[1], shape[3]
    x0, y0 = tf.floor(px), tf.floor(py)
    fx, fy = px - x0, py - y0
    fx, fy = (fx * fx * (3 - 2 * fx))[..., None], (fy * fy * (3 - 2 * fy))[..., None]
    ix0 = tf.math.floormod(tf.cast(x0, tf.int32), g)
    iy0 = tf.math.floormod(tf.cast(y0, tf.int32), g)
    ix1, iy1 = tf.math.floormod(ix0 + 1, g), tf.math.floormod(iy0 + 1, g)
    # One flat gather per corner (much faster than gather_nd with batch_dims on CPU).
    flat = tf.reshape(grid, [-1, channels])
    base = tf.range(shape[0])[:, None, None] * (g * g)
    iy0, iy1 = base + iy0 * g, base + iy1 * g

    top_left, top_right = tf.gather(flat, iy0 + ix0), tf.gather(flat, iy0 + ix1)
    bottom_left, bottom_right = tf.gather(flat, iy1 + ix0), tf.gather(flat, iy1 + ix1)
    top = top_left + (top_right - top_left) * fx
    bottom = bottom_left + (bottom_right - bottom_left) * fx
    return top + (bottom - top) * fy


def fractal_noise(grids, px, py, persistence):
    """Octaves of value noise (each twice the frequency, `persistence` [B] times the amplitude
    of the last), normalised by the total amplitude -> [B, H, W, C] roughly in [-1, 1]."""
    total, norm, amplitude = 0.0, 0.0, tf.ones_like(persistence)
    for octave, grid in enumerate(grids):
        a = _col(amplitude)[..., None]
        total += a * value_noise(grid, px * 2**octave, py * 2**octave)
        norm += a
        amplitude *= persistence
    return total / norm


def soft_step(distance, width):
    """Antialiased coverage of distance < 0 ([B, H, W]); width: the edge's softness."""
    return tf.clip_by_value(0.5 - distance / width, 0.0, 1.0)


def _segment_distance(x, y, ax, ay, bx, by):
    """Distance of each pixel to the segment a-b ([B] endpoints) -> [B, H, W]."""
    dx, dy = _col(bx - ax), _col(by - ay)
    px, py = x - _col(ax), y - _col(ay)
    h = tf.clip_by_value((px * dx + py * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
    return tf.sqrt(tf.square(px - h * dx) + tf.square(py - h * dy))


def _blend(scene, colour, alpha):
    """scene [B, H, W, 3] with colour ([B, 1, 1, 3] or [B, H, W, 3]) over it at alpha [B, H, W]."""
    return scene + (colour - scene) * alpha[..., None]


def background(u, grids, family, image_size):
    """Albedo of the background (before light and camera noise) -> [B, H, W, 3] in [0, 1].

    u: [B, NUM_UNIFORMS]; grids: split_grids of the example; family: [B] int32."""
    x, y = _grid(image_size)
    pixel = 2.0 / image_size
    f = family_of(family)
    # Texture coordinates: rotated to the family's streak angle (+- 20 deg), stretched along it.
    angle = _col(f["angle"] * math.pi / 180 + (u[:, 0] - 0.5) * 0.7)
    stretch = _col(f["anisotropy"] * (0.8 + 0.4 * u[:, 1]))
    freq = _col(f["frequency"] * (0.7 + 0.6 * u[:, 2]) / 2)  # cells per image unit
    along = x * tf.cos(angle) + y * tf.sin(angle)
    across = -x * tf.sin(angle) + y * tf.cos(angle)
    px = along * freq / tf.sqrt(stretch) + _col(u[:, 3] * 8)
    py = across * freq * tf.sqrt(stretch) + _col(u[:, 4] * 8)
    persistence = f["persistence"] * (0.85 + 0.3 * u[:, 5])
    noise = fractal_noise(grids, px, py, persistence)
    # The palette: two colours of the family, mixed by the low octaves of the second channel.
    colour_a = _hsv(f["hue_a"] + (u[:, 6] - 0.5) * 0.12, f["saturation"] * (0.7 + 0.6 * u[:, 7]),
                    f["value"] * (0.75 + 0.5 * u[:, 8]))
    colour_b = _hsv(f["hue_b"] + (u[:, 9] - 0.5) * 0.12,
                    f["saturation"] * (0.6 + 0.6 * u[:, 10]), f["value"] * (0.6 + 0.6 * u[:, 11]))
    mix = value_noise(grids[0][..., 1:], px * 0.5, py * 0.5)[..., 0]
    mix = tf.clip_by_value(mix * 1.5 + 0.5, 0.0, 1.0)[..., None]
    contrast = _col(f["contrast"] * (0.7 + 0.6 * u[:, 12]))[..., None]
    scene = (colour_a + (colour_b - colour_a) * mix) * (1.0 + contrast * noise[..., :1])

    # A step edge: one side of a line through the image is lighter or darker, tinted.
    normal = _col(2 * math.pi * u[:, 13])
    offset = _col((u[:, 14] - 0.5) * 1.2)
    side = soft_step(x * tf.cos(normal) + y * tf.sin(normal) - offset, pixel)
    present = tf.cast(u[:, 15] < _EDGE_PROBABILITY, tf.float32)
    factor = 1.0 + _col(present * (u[:, _EDGE_FACTOR] - 0.5) * 0.7)
    scene = scene * (1.0 + (factor[..., None] - 1.0) * side[..., None])

    for i in range(NUM_BLOBS):  # distractor blobs: wobbly ellipses, some hard, some soft-edged
        b = u[:, 16 + _BLOB_UNIFORMS * i: 16 + _BLOB_UNIFORMS * (i + 1)]
        cx, cy, theta = b[:, 0] * 2.2 - 1.1, b[:, 1] * 2.2 - 1.1, _col(b[:, 2] * math.pi)
        radius, aspect = _col(0.08 + 0.22 * b[:, 3]), _col(0.45 + 0.55 * b[:, 4])
        bu = (tf.cos(theta) * (x - _col(cx)) + tf.sin(theta) * (y - _col(cy))) / radius
        bv = (-tf.sin(theta) * (x - _col(cx)) + tf.cos(theta) * (y - _col(cy))) / (radius * aspect)
        wobble = 0.12 * tf.sin(3 * tf.atan2(bv, bu) + _col(6.28 * b[:, 5]))
        distance = (tf.sqrt(bu * bu + bv * bv) - 1.0 + wobble) * radius * aspect
        softness = pixel + _col(b[:, 6]) * 0.25
        alpha = soft_step(distance, softness) * _col(0.35 + 0.55 * b[:, 7])
        alpha *= _col(tf.cast(b[:, 8] < _BLOB_PROBABILITY, tf.float32))
        colour = _hsv(b[:, 9], 0.15 + 0.5 * b[:, 10], 0.25 + 0.65 * b[:, 11])
        textured = colour * (1.0 + 0.5 * contrast * noise[..., :1])  # the blob shares the grain
        scene = _blend(scene, textured, alpha)

    for i in range(NUM_LINES):  # distractor lines, long and thin, dark or light
        start = 16 + _BLOB_UNIFORMS * NUM_BLOBS + _LINE_UNIFORMS * i
        a = u[:, start: start + _LINE_UNIFORMS]
        cx, cy, direction = a[:, 0] * 2 - 1, a[:, 1] * 2 - 1, a[:, 2] * math.pi
        half = 0.3 + 1.2 * a[:, 3]
        dx, dy = half * tf.cos(direction), half * tf.sin(direction)
        distance = _segment_distance(x, y, cx - dx, cy - dy, cx + dx, cy + dy)
        width = _col((0.6 + 1.4 * a[:, 4]) * pixel * image_size / 64)  # 0.6-2 px at 64 px
        alpha = soft_step(distance - width / 2, pixel) * _col(0.45 + 0.5 * a[:, 5])
        alpha *= _col(tf.cast(a[:, 6] < _LINE_PROBABILITY, tf.float32))
        dark = a[:, 7] < 0.6
        value = tf.where(dark, 0.08 + 0.2 * a[:, 9], 0.7 + 0.25 * a[:, 9])
        scene = _blend(scene, _hsv(a[:, 8], 0.1 + 0.3 * a[:, 4], value), alpha)
    return tf.clip_by_value(scene, 0.0, 1.0)


def lighting(u, image_size):
    """The light on the whole scene: a directional gradient, a vignette and a colour tint.
    u: [B, NUM_LIGHT_UNIFORMS] -> multiplier [B, H, W, 3] (about 0.5-1.5)."""
    x, y = _grid(image_size)
    direction = _col(2 * math.pi * u[:, 0])
    strength = _col(0.1 + 0.35 * u[:, 1])
    ramp = 1.0 + strength * (x * tf.cos(direction) + y * tf.sin(direction))
    vignette = 1.0 - _col(0.25 * u[:, 2]) * (x * x + y * y) / 2
    tint = 1.0 + (tf.stack([u[:, 3], u[:, 4], u[:, 5]], -1) - 0.5) * 0.16  # warm / cool light
    return (ramp * vignette)[..., None] * tint[:, None, None, :]


def camera_noise(pixel_uniforms, block_uniforms, image_size):
    """JPEG-like noise, additive: per 8x8 block a luminance offset and one cosine (DCT) pattern,
    plus fine grain per pixel. pixel_uniforms [B, H, W, 3], block_uniforms [B, n, n, 4] with
    n = ceil(H / 8) -> [B, H, W, 3]."""
    blocks = tf.repeat(tf.repeat(block_uniforms, JPEG_BLOCK, axis=1), JPEG_BLOCK, axis=2)
    blocks = blocks[:, :image_size, :image_size]
    i = tf.range(image_size, dtype=tf.float32) % JPEG_BLOCK
    row, col = i[None, :, None], i[None, None, :]
    fu, fv = tf.floor(blocks[..., 2] * 4), tf.floor(blocks[..., 3] * 4)
    pattern = tf.cos(math.pi * (2 * col + 1) * fu / 16) * tf.cos(math.pi * (2 * row + 1) * fv / 16)
    luminance = 0.025 * (blocks[..., 0] - 0.5) + 0.03 * (blocks[..., 1] - 0.5) * pattern
    grain = 0.04 * (pixel_uniforms - 0.5)
    return luminance[..., None] + grain
