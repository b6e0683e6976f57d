"""Built-in synthetic `clutter` dataset: the harder sibling of `shapes`, with photo-like scenes.

Hierarchy (ground truth is returned for evaluation only):
  parent = silhouette family, none of them convex: crescent, star, L, notched disc (`num_parents`
           <= 6 adds cross and dumbbell); each with a random shape parameter (thickness, notch
           width, ...), aspect ratio, rotation, size, position and a slight wobble of the outline;
  child  = appearance: a fill hue unique across ALL children plus a texture (mottled, stripes,
           spots, checker); child id = parent * children_per_parent + k. The body is shaded darker
           towards its outline, and about a third of the objects are pulled towards the colour of
           the background around them (low contrast).
Backgrounds (`clutter_scene.py`): two-colour palettes mixed by value noise, multi-octave fractal
texture with a family's frequency, roughness and streak direction, a step edge, distractor blobs
and lines that are not objects; a light gradient, vignette and tint on the whole scene; JPEG-like
block noise and grain. The background family is the parent's in 3 of 4 object scenes and a
random one otherwise (birds are mostly, not always, on water); the clean-background stream draws
families uniformly, as the object scenes' backgrounds are distributed.

The contract is `shapes.py`'s: every example is a pure function of (seed, stream, index), drawn
with `tf.random.stateless_uniform`, so an index renders the same scene in any batch; the object
scenes come with their mask (exactly the pixels where the object was drawn with antialiased
coverage >= 0.5, i.e. signed distance <= 0), labels and clean background (same light
and camera noise, object removed: equal to the image outside the object's antialiased edge).
"""

import math

import tensorflow as tf

from onegan_tf.data import clutter_scene as scene
from onegan_tf.data.shapes import _col, _grid, _hsv, _index_batches, _soft_band, _star_sdf

MAX_PARENTS = 6
MAX_CHILDREN_PER_PARENT = 4
FAMILY_NAMES = ("crescent", "star", "L", "notched disc", "cross", "dumbbell")
BACKGROUND_MATCHES_PARENT = 0.75  # probability that an object scene's background is its parent's

# Random streams: objects, clean backgrounds, and the camera noise of each (pixel-sized, so it
# depends on the resolution; the other numbers do not).
_OBJECT_STREAM, _BACKGROUND_STREAM, _NUM_STREAMS = 0, 1, 4
_CAMERA_STREAM_OFFSET = 2

# Layout of an example's parameter uniforms: [0, 4) labels and family, [4, 24) object, then the
# background's, then the light's; after them the value-noise grids of background and object.
_OBJECT = 4
_BACKGROUND = 24
_LIGHT = _BACKGROUND + scene.NUM_UNIFORMS
_GRIDS = _LIGHT + scene.NUM_LIGHT_UNIFORMS
_OBJECT_GRID = 8  # the mottled texture's value-noise grid side
_NUM_UNIFORMS = _GRIDS + scene.NUM_GRID_VALUES + _OBJECT_GRID * _OBJECT_GRID

# Unit silhouettes have circumradius ~1; their area (at the middle shape parameter, measured on a
# fine grid) lets us sample the object's AREA, so families differ by outline, not by size.
_UNIT_AREA = (1.51, 1.47, 1.37, 2.59, 2.03, 1.40)
_AREA_RANGE = (0.07, 0.28)  # object area as a fraction of the image, before border clipping
_LOW_CONTRAST_PROBABILITY = 0.3


def _example_uniforms(indices, seed, stream, image_size):
    """[B] int64 indices -> ([B, _NUM_UNIFORMS] parameters, [B, H, W, 3] pixel uniforms,
    [B, n, n, 4] JPEG block uniforms), one seed per example (n = ceil(H / 8))."""
    blocks = -(-image_size // scene.JPEG_BLOCK)
    pixel_count = image_size * image_size * 3
    camera_count = pixel_count + blocks * blocks * scene.NUM_BLOCK_UNIFORMS
    key = seed * _NUM_STREAMS + stream  # bijective in (seed, stream)

    def one(index):
        parameters = tf.random.stateless_uniform(
            [_NUM_UNIFORMS], tf.stack([tf.constant(key, tf.int64), index]))
        camera_key = tf.constant(key + _CAMERA_STREAM_OFFSET, tf.int64)
        camera = tf.random.stateless_uniform([camera_count], tf.stack([camera_key, index]))
        return parameters, camera

    parameters, camera = tf.map_fn(one, indices, fn_output_signature=(tf.float32, tf.float32))
    pixels = tf.reshape(camera[:, :pixel_count], [-1, image_size, image_size, 3])
    block = tf.reshape(camera[:, pixel_count:], [-1, blocks, blocks, scene.NUM_BLOCK_UNIFORMS])
    return parameters, pixels, block


def _box(u, v, cu, cv, hu, hv):
    """Signed distance to an axis-aligned box centred (cu, cv) with half-sides (hu, hv)."""
    du, dv = tf.abs(u - cu) - hu, tf.abs(v - cv) - hv
    outside = tf.sqrt(tf.square(tf.maximum(du, 0.0)) + tf.square(tf.maximum(dv, 0.0)))
    return outside + tf.minimum(tf.maximum(du, dv), 0.0)


def _family_sdfs(u, v, p, num_parents):
    """Signed distance (negative inside) of each family's unit silhouette, shape parameter
    p in [0, 1] ([B, 1, 1]) -> [B, H, W, num_parents]."""
    r = tf.sqrt(u * u + v * v)

    def crescent():  # moved right by 0.3 to bring its centroid near the origin
        inner, offset, cu = 0.72 + 0.12 * p, 0.38 + 0.14 * p, u - 0.3
        return tf.maximum(tf.sqrt(cu * cu + v * v) - 1.0,
                          inner - tf.sqrt(tf.square(cu - offset) + v * v))

    def ell():  # centroid near the origin
        t = 0.48 + 0.16 * p  # arm thickness
        lu, lv = u - 0.15, v + 0.15
        return tf.minimum(_box(lu, lv, -0.75 + t / 2, 0.0, t / 2, 0.75),
                          _box(lu, lv, 0.0, 0.75 - t / 2, 0.75, t / 2))

    def notched():
        half = 0.4 + 0.3 * p  # half-angle of the notch (a wedge from the centre)
        av = tf.abs(v)
        in_front = u * tf.cos(half) + av * tf.sin(half) >= 0
        wedge = tf.where(in_front, -u * tf.sin(half) + av * tf.cos(half), r)
        return tf.maximum(r - 1.0, -wedge)

    def cross():
        w = 0.24 + 0.12 * p
        au, av = tf.abs(u), tf.abs(v)
        return tf.minimum(tf.maximum(au - 1.0, av - w), tf.maximum(au - w, av - 1.0))

    def dumbbell():
        bar = 0.18 + 0.1 * p
        ends = tf.sqrt(tf.square(tf.abs(u) - 0.52) + v * v) - 0.46
        return tf.minimum(ends, _box(u, v, 0.0, 0.0, 0.52, bar))

    sdfs = (crescent, lambda: _star_sdf(u, v), ell, notched, cross, dumbbell)
    return tf.stack([f() for f in sdfs[:num_parents]], axis=-1)


def _texture(o, ou, ov, k, pixel, grid, children_per_parent):
    """Per child slot k ([B]): mottled, stripes, spots, checker in object coordinates
    -> pattern [B, H, W] in [0, 1]."""
    period = 0.5  # object units: ~4 periods across the object
    tu, tv, p = ou / period + _col(o[:, 11]), ov / period + _col(o[:, 12]), pixel / period
    mottled = scene.value_noise(grid, ou * 2 + 4, ov * 2 + 4)[..., 0]
    mottled = tf.clip_by_value(0.5 + mottled, 0.0, 1.0)
    stripes = _soft_band(tu, 0.45, p)
    spots_dist = tf.sqrt(tf.square(tf.math.floormod(tu, 1.0) - 0.5)
                         + tf.square(tf.math.floormod(tv, 1.0) - 0.5))
    spots = tf.clip_by_value((0.28 - spots_dist) / p + 0.5, 0.0, 1.0)
    sv = _soft_band(tv, 0.5, p)
    checker = stripes + sv - 2 * stripes * sv
    pattern = tf.stack([mottled, stripes, spots, checker][:children_per_parent], -1)
    return tf.reduce_sum(pattern * tf.one_hot(k, children_per_parent)[:, None, None], -1)


def _object(u, parent, k, background, num_parents, children_per_parent, image_size):
    """The object's colour [B, H, W, 3] in [0, 1] and its antialiased coverage [B, H, W] in
    [0, 1] (>= 0.5: the mask)."""
    o = u[:, _OBJECT:_BACKGROUND]
    x, y = _grid(image_size)
    area = 4.0 * (_AREA_RANGE[0] + (_AREA_RANGE[1] - _AREA_RANGE[0]) * o[:, 0])  # image area 4
    radius = tf.sqrt(area / tf.gather(_UNIT_AREA, parent))
    room = tf.maximum(1.0 - 0.8 * radius, 0.0)
    cx, cy = _col((2 * o[:, 2] - 1) * room), _col((2 * o[:, 3] - 1) * room)
    angle, r = _col(2 * math.pi * o[:, 1]), _col(radius)
    aspect = _col(tf.exp((o[:, 4] - 0.5) * 0.6))  # 0.74-1.35, area kept
    ou = (tf.cos(angle) * (x - cx) + tf.sin(angle) * (y - cy)) / r
    ov = (-tf.sin(angle) * (x - cx) + tf.cos(angle) * (y - cy)) / r
    su, sv = ou / aspect, ov * aspect
    sdf = tf.reduce_sum(_family_sdfs(su, sv, _col(o[:, 5]), num_parents)
                        * tf.one_hot(parent, num_parents)[:, None, None], -1)
    theta = tf.atan2(sv, su)  # a slight wobble of the outline, as no real object is exact
    sdf += _col(0.05 * o[:, 7]) * (tf.sin(3 * theta + _col(6.28 * o[:, 6]))
                                   + tf.sin(5 * theta + _col(6.28 * o[:, 16])))
    pixel = (2.0 / image_size) / r  # one pixel in object units
    coverage = scene.soft_step(sdf, pixel)

    num_children = num_parents * children_per_parent
    hue = (tf.cast(k * num_parents + parent, tf.float32) + (o[:, 8] - 0.5) * 0.2) / num_children
    base = _hsv(hue, 0.45 + 0.4 * o[:, 9], 0.5 + 0.4 * o[:, 10])
    grid = tf.reshape(u[:, _GRIDS + scene.NUM_GRID_VALUES:] * 2 - 1,
                      [-1, _OBJECT_GRID, _OBJECT_GRID, 1])
    pattern = _texture(o, ou, ov, k, pixel, grid, children_per_parent)
    # Second colour per texture: mottled darker, stripes lighter and hue-shifted, spots pale,
    # checker dark.
    shifted = _hsv(hue + 0.08 + 0.06 * o[:, 15], 0.35 + 0.3 * o[:, 9], 0.75 + 0.2 * o[:, 10])
    second = tf.stack([0.5 * base, shifted, base + 0.75 * (1.0 - base), 0.35 * base], axis=1)
    second = tf.gather(second, k, batch_dims=1)
    colour = base + (second - base) * pattern[..., None]
    colour *= (0.65 + 0.35 * tf.sqrt(tf.clip_by_value(-sdf / 0.35, 0.0, 1.0)))[..., None]
    # Low contrast: pulled towards the mean background colour under the object.
    weight = coverage[..., None]
    around = tf.reduce_sum(background * weight, [1, 2], keepdims=True) / (
        tf.reduce_sum(weight, [1, 2], keepdims=True) + 1e-6)
    pull = tf.where(o[:, 13] < _LOW_CONTRAST_PROBABILITY, 0.45 + 0.25 * o[:, 14], 0.0)
    colour += (around - colour) * pull[:, None, None, None]
    return tf.clip_by_value(colour, 0.0, 1.0), coverage


def _check(num_parents, children_per_parent=1):
    if not 1 <= num_parents <= MAX_PARENTS:
        raise ValueError(f"num_parents must be in [1, {MAX_PARENTS}], got {num_parents}")
    if not 1 <= children_per_parent <= MAX_CHILDREN_PER_PARENT:
        raise ValueError(f"children_per_parent must be in [1, {MAX_CHILDREN_PER_PARENT}], "
                         f"got {children_per_parent}")


def _label(draw, count):
    """Uniforms [B] -> int32 in [0, count)."""
    return tf.minimum(tf.cast(draw * count, tf.int32), count - 1)


def _photograph(albedo, u, pixels, blocks, image_size):
    """The scene under its light, through the camera -> [B, H, W, 3] in [-1, 1]."""
    light = scene.lighting(u[:, _LIGHT:_GRIDS], image_size)
    photo = albedo * light + scene.camera_noise(pixels, blocks, image_size)
    return tf.clip_by_value(photo, 0.0, 1.0) * 2.0 - 1.0


def _background_albedo(u, family, image_size):
    grids = scene.split_grids(u[:, _GRIDS:_GRIDS + scene.NUM_GRID_VALUES])
    return scene.background(u[:, _BACKGROUND:_LIGHT], grids, family, image_size)


def render_objects(indices, *, seed: int, image_size: int, num_parents: int = 4,
                   children_per_parent: int = 3) -> dict:
    """Renders object scenes for int64 `indices` [B].

    Returns a dict: "image" [B, H, W, 3] in [-1, 1]; "background" [B, H, W, 3] in [-1, 1], the
    same scene with the object removed; "mask" [B, H, W, 1] in {0, 1} (coverage >= 0.5);
    "parent" [B] int32; "child" [B] int32 (= parent * children_per_parent + k).
    """
    _check(num_parents, children_per_parent)
    indices = tf.convert_to_tensor(indices, tf.int64)
    u, pixels, blocks = _example_uniforms(indices, seed, _OBJECT_STREAM, image_size)
    parent = _label(u[:, 0], num_parents)
    k = _label(u[:, 1], children_per_parent)
    family = tf.where(u[:, 2] < BACKGROUND_MATCHES_PARENT, parent, _label(u[:, 3], num_parents))
    albedo = _background_albedo(u, family, image_size)
    colour, coverage = _object(u, parent, k, albedo, num_parents, children_per_parent,
                               image_size)
    composite = albedo + (colour - albedo) * coverage[..., None]  # == albedo where 0
    return {
        "image": _photograph(composite, u, pixels, blocks, image_size),
        "background": _photograph(albedo, u, pixels, blocks, image_size),
        "mask": tf.cast(coverage >= 0.5, tf.float32)[..., None],
        "parent": parent,
        "child": parent * children_per_parent + k,
    }


def render_backgrounds(indices, *, seed: int, image_size: int, num_parents: int = 4) -> tf.Tensor:
    """Clean backgrounds (families uniform over the parents') for int64 `indices` [B]
    -> [B, H, W, 3] in [-1, 1]. Distractors, light and camera noise as in the object scenes."""
    _check(num_parents)
    indices = tf.convert_to_tensor(indices, tf.int64)
    u, pixels, blocks = _example_uniforms(indices, seed, _BACKGROUND_STREAM, image_size)
    albedo = _background_albedo(u, _label(u[:, 0], num_parents), image_size)
    return _photograph(albedo, u, pixels, blocks, image_size)


def object_dataset(*, seed: int, image_size: int, batch_size: int, num_parents: int = 4,
                   children_per_parent: int = 3, start_index: int = 0,
                   num_examples: int | None = None) -> tf.data.Dataset:
    """tf.data.Dataset of render_objects dicts for indices start_index, start_index + 1, ..."""
    _check(num_parents, children_per_parent)

    def render(indices):
        return render_objects(indices, seed=seed, image_size=image_size,
                              num_parents=num_parents, children_per_parent=children_per_parent)

    ds = _index_batches(batch_size, start_index, num_examples)
    return ds.map(render, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE)


def background_dataset(*, seed: int, image_size: int, batch_size: int, num_parents: int = 4,
                       start_index: int = 0) -> tf.data.Dataset:
    """Infinite tf.data.Dataset of clean-background batches [B, H, W, 3] in [-1, 1]."""
    _check(num_parents)

    def render(indices):
        return render_backgrounds(indices, seed=seed, image_size=image_size,
                                  num_parents=num_parents)

    ds = _index_batches(batch_size, start_index, None)
    return ds.map(render, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE)
