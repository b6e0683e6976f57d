"""Built-in synthetic `shapes` dataset: unlabeled object images plus a separate background stream.

Hierarchy (ground truth is returned for evaluation only):
  parent = silhouette: disc, square, triangle, plus, star, ring (`num_parents` <= 6);
  child  = appearance: a fill hue unique across ALL children plus a texture (solid, stripes, dots,
           checker); child id = parent * children_per_parent + k (`children_per_parent` <= 4).
Backgrounds are muted dark-to-light colour gradients with low-frequency noise, soft blobs and
fine ripples; their hue family and the ripples' orientation depend on the parent (like water birds
on water), the gradient's direction does not. This keeps trivial clustering honest while the
parent stays visible to a CNN: when the gradient direction followed the parent, k-means on raw
pixels clustered the children with NMI 0.85; now it scores ~0.5 (and ~0.5 ACC for parents),
since random-phase ripples average away in pixel statistics.

Every example is a pure function of (seed, stream, index): its random numbers come from
`tf.random.stateless_uniform` seeded per example, so an index renders the same scene in any batch
and datasets can resume from any start index. (Ids and masks are bit-identical; colours may differ
in the last float32 bit between batch sizes or eager/graph, as TF's SIMD and scalar paths do.)

Shapes are signed distances on a pixel-centre grid in [-1, 1]^2 (rotation = rotating the
coordinates), so any resolution works.
"""

import math

import tensorflow as tf

MAX_PARENTS = 6
MAX_CHILDREN_PER_PARENT = 4

# Per-example random streams. Object scenes and the clean-background stream use different
# streams, so the background stream never reproduces an object image's background.
_OBJECT_STREAM = 0
_BACKGROUND_STREAM = 1
_NUM_STREAMS = 2

# Layout of the per-example uniform vector: [0, 16) object, [16, 96) background.
_NUM_UNIFORMS = 96
_NOISE_GRID = 4  # low-frequency noise: 4x4 grids upsampled to the image (resolution-free)

# Unit shapes have circumradius ~1. Their area lets us sample object AREA directly (so parents
# differ by silhouette, not by size); their bounding radius keeps objects mostly inside the image.
_PLUS_HALF_WIDTH = 0.33
_RING_INNER = 0.55
_STAR_INNER = 0.5  # ratio parameter of the star SDF (deeper notches when larger)
_UNIT_AREA = (math.pi, 2.0, 1.2990, 2.2033, 1.4695, math.pi * (1 - _RING_INNER**2))
_UNIT_BOUND = (1.0, 1.0, 1.0, 1.053, 1.0, 1.0)
_AREA_RANGE = (0.09, 0.30)  # object area as a fraction of the image, before border clipping

# Background hue family per parent: water, grass, sand, dusk, teal, brick.
_BG_HUES = (0.58, 0.28, 0.09, 0.78, 0.47, 0.99)
# Background ripples: orientation parent * 180 deg / num_parents, period in image units (the
# image spans 2), luminance amplitude.
_RIPPLE_PERIOD = 0.35
_RIPPLE_AMPLITUDE = 0.07


def _example_uniforms(indices, seed, stream):
    """[B] int64 indices -> [B, _NUM_UNIFORMS] float32 uniforms in [0, 1), one seed per example."""
    key = tf.constant(seed * _NUM_STREAMS + stream, tf.int64)  # bijective in (seed, stream)
    seeds = tf.stack([tf.fill(tf.shape(indices), key), indices], axis=1)
    return tf.map_fn(
        lambda s: tf.random.stateless_uniform([_NUM_UNIFORMS], s),
        seeds,
        fn_output_signature=tf.float32,
    )


def _grid(image_size):
    """Pixel-centre coordinates, each [1, H, W], in [-1, 1]; y grows downwards."""
    c = (tf.range(image_size, dtype=tf.float32) + 0.5) * (2.0 / image_size) - 1.0
    y, x = tf.meshgrid(c, c, indexing="ij")
    return x[None], y[None]


def _col(values):
    """[B] -> [B, 1, 1] so per-example parameters broadcast over the grid."""
    return values[:, None, None]


def _hsv(h, s, v):
    """[B] hue (wraps), saturation, value -> [B, 1, 1, 3] RGB in [0, 1]."""
    rgb = tf.image.hsv_to_rgb(tf.stack([tf.math.floormod(h, 1.0), s, v], axis=-1))
    return rgb[:, None, None, :]


def _star_sdf(u, v):
    """Five-pointed star, outer radius 1 (after Inigo Quilez's sdStar5)."""
    k1x, k1y = 0.809016994375, -0.587785252292
    u = tf.abs(u)
    d = tf.maximum(k1x * u + k1y * v, 0.0)  # fold into one of the ten symmetric sectors
    u, v = u - 2 * d * k1x, v - 2 * d * k1y
    d = tf.maximum(-k1x * u + k1y * v, 0.0)
    u, v = u + 2 * d * k1x, v - 2 * d * k1y
    u, v = tf.abs(u), v - 1.0
    bax, bay = -_STAR_INNER * k1y, _STAR_INNER * k1x - 1.0
    h = tf.clip_by_value((u * bax + v * bay) / (bax**2 + bay**2), 0.0, 1.0)
    dist = tf.sqrt(tf.square(u - bax * h) + tf.square(v - bay * h))
    return dist * tf.sign(v * bax - u * bay)


def _shape_sdfs(u, v, num_parents):
    """Signed distance (negative inside) of each parent's unit silhouette: [..., num_parents]."""
    r = tf.sqrt(u * u + v * v)
    au, av = tf.abs(u), tf.abs(v)
    tri = [u * math.cos(a) + v * math.sin(a) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    w = _PLUS_HALF_WIDTH
    sdfs = [
        lambda: r - 1.0,  # disc
        lambda: tf.maximum(au, av) - math.sqrt(0.5),  # square
        lambda: tf.reduce_max(tf.stack(tri), axis=0) - 0.5,  # triangle, inradius 1/2
        lambda: tf.minimum(tf.maximum(au - 1.0, av - w), tf.maximum(au - w, av - 1.0)),  # plus
        lambda: _star_sdf(u, v),  # star
        lambda: tf.abs(r - (1 + _RING_INNER) / 2) - (1 - _RING_INNER) / 2,  # ring
    ]
    return tf.stack([f() for f in sdfs[:num_parents]], axis=-1)


def _soft_band(t, width, pixel):
    """Antialiased periodic band: coverage of |frac(t) - 1/2| < width/2 in period units."""
    dist = tf.abs(tf.math.floormod(t, 1.0) - 0.5)
    return tf.clip_by_value((width / 2 - dist) / pixel + 0.5, 0.0, 1.0)


def _background(u, parent, image_size, num_parents):
    """Muted gradient + low-frequency noise + soft blobs. -> [B, H, W, 3] in [0, 1]."""
    x, y = _grid(image_size)
    hue = tf.gather(_BG_HUES, parent) + (u[:, 16] - 0.5) * 0.08
    dark = _hsv(hue, 0.3 + 0.25 * u[:, 18], 0.2 + 0.2 * u[:, 20])
    light = _hsv(hue + 0.03 + 0.06 * u[:, 17], 0.2 + 0.25 * u[:, 19], 0.6 + 0.2 * u[:, 21])
    angle = _col(2 * math.pi * u[:, 22])  # any direction, whatever the parent
    ramp = 0.5 + 0.4 * (x * tf.cos(angle) + y * tf.sin(angle)) + _col(u[:, 23] - 0.5) * 0.3
    bg = dark + (light - dark) * tf.clip_by_value(ramp, 0.0, 1.0)[..., None]
    for i in range(2):  # two soft light/dark blobs
        b = u[:, 24 + 4 * i : 28 + 4 * i]
        bx, by, radius, amp = b[:, 0] * 2 - 1, b[:, 1] * 2 - 1, 0.25 + 0.35 * b[:, 2], b[:, 3] - 0.5
        d2 = tf.square(x - _col(bx)) + tf.square(y - _col(by))
        bg += (0.25 * _col(amp) * tf.exp(-d2 / _col(2 * radius**2)))[..., None]
    # Ripples: a fine luminance wave whose orientation is the parent's (random phase), like water
    # or grass texture. A CNN sees it at once; pixel statistics average it away.
    theta = _col(math.pi * tf.cast(parent, tf.float32) / num_parents + (u[:, 30] - 0.5) * 0.15)
    phase = _col(u[:, 31])
    wave = tf.sin(2 * math.pi * ((x * tf.cos(theta) + y * tf.sin(theta)) / _RIPPLE_PERIOD + phase))
    bg += (_RIPPLE_AMPLITUDE * wave)[..., None]
    # Mostly luminance noise, little colour noise, so the parent's hue family stays visible.
    grid = tf.reshape(u[:, 32:96] * 2 - 1, [-1, _NOISE_GRID, _NOISE_GRID, 4])
    noise = tf.image.resize(grid, [image_size, image_size], method="bicubic")
    bg += 0.1 * noise[..., :1] + 0.03 * noise[..., 1:]
    return tf.clip_by_value(bg, 0.0, 1.0)


def _object(u, parent, k, num_parents, children_per_parent, image_size):
    """Textured, rotated shape. -> (colour [B, H, W, 3] in [0, 1], coverage [B, H, W] in [0, 1])."""
    x, y = _grid(image_size)
    area = 4.0 * (_AREA_RANGE[0] + (_AREA_RANGE[1] - _AREA_RANGE[0]) * u[:, 2])  # image area is 4
    radius = tf.sqrt(area / tf.gather(_UNIT_AREA, parent))
    room = tf.maximum(1.0 - 0.85 * radius * tf.gather(_UNIT_BOUND, parent), 0.0)
    cx, cy = _col((2 * u[:, 4] - 1) * room), _col((2 * u[:, 5] - 1) * room)
    angle = _col(2 * math.pi * u[:, 3])
    r = _col(radius)
    # Object-frame unit coordinates: the silhouette and its texture rotate and scale together.
    ou = (tf.cos(angle) * (x - cx) + tf.sin(angle) * (y - cy)) / r
    ov = (-tf.sin(angle) * (x - cx) + tf.cos(angle) * (y - cy)) / r
    sdf = tf.reduce_sum(
        _shape_sdfs(ou, ov, num_parents) * tf.one_hot(parent, num_parents)[:, None, None], -1
    )
    pixel = (2.0 / image_size) / r  # one pixel in object units
    coverage = tf.clip_by_value(0.5 - sdf / pixel, 0.0, 1.0)

    # Fill hue: hue slot k * P + p spreads a parent's children around the wheel and gives every
    # child its own hue; the texture (one per k) separates neighbours further.
    num_children = num_parents * children_per_parent
    hue = (tf.cast(k * num_parents + parent, tf.float32) + (u[:, 6] - 0.5) * 0.2) / num_children
    base = _hsv(hue, 0.8 + 0.2 * u[:, 7], 0.85 + 0.15 * u[:, 8])
    period = 0.55  # texture period in object units: ~3.5 periods across the object
    tu = ou / period + _col(u[:, 9])
    tv = ov / period + _col(u[:, 10])
    p = pixel / period
    stripes = _soft_band(tu, 0.5, p)
    dots_dist = tf.sqrt(
        tf.square(tf.math.floormod(tu, 1.0) - 0.5) + tf.square(tf.math.floormod(tv, 1.0) - 0.5)
    )
    dots = tf.clip_by_value((0.3 - dots_dist) / p + 0.5, 0.0, 1.0)
    sv = _soft_band(tv, 0.5, p)
    checker = stripes + sv - 2 * stripes * sv  # soft XOR of two stripe sets
    solid = tf.zeros_like(stripes)
    pattern = tf.stack([solid, stripes, dots, checker][:children_per_parent], -1)
    pattern = tf.reduce_sum(pattern * tf.one_hot(k, children_per_parent)[:, None, None], -1)
    # Second colour per texture: stripes light, dots near-white, checker dark.
    white = tf.ones_like(base)
    second = tf.stack(
        [base, base + 0.6 * (white - base), base + 0.85 * (white - base), 0.3 * base], axis=1
    )  # [B, 4, 1, 1, 3]
    second = tf.gather(second, k, batch_dims=1)
    colour = base + (second - base) * pattern[..., None]
    return colour, coverage


def _check(num_parents, children_per_parent=1):
    if not 1 <= num_parents <= MAX_PARENTS:
        raise ValueError(f"num_parents must be in [1, {MAX_PARENTS}], got {num_parents}")
    if not 1 <= children_per_parent <= MAX_CHILDREN_PER_PARENT:
        raise ValueError(
            f"children_per_parent must be in [1, {MAX_CHILDREN_PER_PARENT}], "
            f"got {children_per_parent}"
        )


def render_objects(
    indices, *, seed: int, image_size: int, num_parents: int = 4, children_per_parent: int = 3
) -> dict:
    """Renders object scenes for int64 `indices` [B].

    Returns a dict: "image" [B, H, W, 3] in [-1, 1]; "background" [B, H, W, 3] in [-1, 1], the
    same scene with the object removed; "mask" [B, H, W, 1] in {0, 1} (soft coverage >= 0.5);
    "parent" [B] int32; "child" [B] int32 (= parent * children_per_parent + k).
    """
    _check(num_parents, children_per_parent)
    indices = tf.convert_to_tensor(indices, tf.int64)
    u = _example_uniforms(indices, seed, _OBJECT_STREAM)
    parent = tf.minimum(tf.cast(u[:, 0] * num_parents, tf.int32), num_parents - 1)
    k = tf.minimum(tf.cast(u[:, 1] * children_per_parent, tf.int32), children_per_parent - 1)
    background = _background(u, parent, image_size, num_parents)
    colour, coverage = _object(u, parent, k, num_parents, children_per_parent, image_size)
    image = background + (colour - background) * coverage[..., None]  # == background where 0
    return {
        "image": image * 2.0 - 1.0,
        "background": background * 2.0 - 1.0,
        "mask": tf.cast(coverage >= 0.5, tf.float32)[..., None],
        "parent": parent,
        "child": parent * children_per_parent + k,
    }


def render_backgrounds(indices, *, seed: int, image_size: int, num_parents: int = 4) -> tf.Tensor:
    """Clean backgrounds (random parent's family) for int64 `indices` [B] -> [B, H, W, 3] in
    [-1, 1]. Same distribution as the objects' backgrounds, drawn from a separate random stream."""
    _check(num_parents)
    indices = tf.convert_to_tensor(indices, tf.int64)
    u = _example_uniforms(indices, seed, _BACKGROUND_STREAM)
    parent = tf.minimum(tf.cast(u[:, 0] * num_parents, tf.int32), num_parents - 1)
    return _background(u, parent, image_size, num_parents) * 2.0 - 1.0


def _index_batches(batch_size, start_index, num_examples):
    """Batches of consecutive int64 indices; infinite (full batches only) when num_examples is
    None, else exactly num_examples indices with the last partial batch kept."""
    if num_examples is None:
        return tf.data.Dataset.counter(start_index).batch(batch_size, drop_remainder=True)
    indices = tf.data.Dataset.range(start_index, start_index + num_examples)
    return indices.batch(batch_size, drop_remainder=False)


def object_dataset(
    *,
    seed: int,
    image_size: int,
    batch_size: int,
    num_parents: int = 4,
    children_per_parent: int = 3,
    start_index: int = 0,
    num_examples: int | None = None,
) -> tf.data.Dataset:
    """tf.data.Dataset of render_objects dicts for indices start_index, start_index + 1, ..."""
    _check(num_parents, children_per_parent)

    def render(indices):
        return render_objects(
            indices,
            seed=seed,
            image_size=image_size,
            num_parents=num_parents,
            children_per_parent=children_per_parent,
        )

    ds = _index_batches(batch_size, start_index, num_examples)
    ds = ds.map(render, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def background_dataset(
    *, seed: int, image_size: int, batch_size: int, num_parents: int = 4, start_index: int = 0
) -> tf.data.Dataset:
    """Infinite tf.data.Dataset of clean-background batches [B, H, W, 3] in [-1, 1]."""
    _check(num_parents)

    def render(indices):
        return render_backgrounds(
            indices, seed=seed, image_size=image_size, num_parents=num_parents
        )

    ds = _index_batches(batch_size, start_index, None)
    ds = ds.map(render, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
