"""Evaluation of a model on held-out images with ground truth (paper Sec. 5, DESIGN section 7).

`quick_metrics` is the cheap periodic evaluation run during training (segmentation IoU/DICE,
parent/child ACC and NMI on a fixed held-out subset). `evaluate` is the full report of
`python -m onegan_tf.evaluate`: those plus trivial baselines, reconstruction L1, object removal
against the true clean background (shapes), and FID / IS / CFID / CIS from an evaluator
network (`onegan_tf.evaluator`); `markdown_table` renders it.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from onegan_tf import inference, metrics
from onegan_tf.autoencoder import AutoEncoder

_ANALYSE = weakref.WeakKeyDictionary()  # autoencoder -> its traced batch function


def quick_metrics(autoencoder: AutoEncoder, examples: dict) -> dict[str, float]:
    """examples: dict of numpy arrays from data.evaluation_batch: "image", and whichever of
    "mask", "parent", "child" the dataset has (each metric needs its ground truth)."""
    out = infer_in_batches(autoencoder, examples["image"])
    results = {}
    if "mask" in examples:
        results["eval/iou"] = metrics.iou(out["mask"], examples["mask"])
        results["eval/dice"] = metrics.dice(out["mask"], examples["mask"])
    for level in ("parent", "child"):
        if level in examples:
            predicted = out[level]
            labels = examples[level]
            results[f"eval/{level}_acc"] = metrics.clustering_accuracy(labels, predicted)
            results[f"eval/{level}_nmi"] = metrics.normalized_mutual_information(labels,
                                                                                 predicted)
    return results


def infer_in_batches(autoencoder: AutoEncoder, images, batch_size: int = 128) -> dict:
    """Everything the reconstruction path and encoders give for images [N, H, W, 3] in [-1, 1]:
    "mask", "reconstruction", "background" (object removed), "parent", "child" (numpy)."""

    run = _ANALYSE.get(autoencoder)
    if run is None:  # traced once per model: periodic evaluation reuses it every time

        @tf.function(reduce_retracing=True)
        def run(batch):
            out = inference.analyse(autoencoder, batch)  # the encoders run once per batch
            return {"mask": out["mask"], "reconstruction": out["image"],
                    "background": out["background"], "parent": out["parent"],
                    "child": out["child"],
                    "shape_parent": tf.argmax(out["shape_parent_probs"], axis=-1)}
        _ANALYSE[autoencoder] = run

    parts = [{k: v.numpy() for k, v in run(tf.constant(images[s:s + batch_size])).items()}
             for s in range(0, len(images), batch_size)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def generate_in_batches(autoencoder: AutoEncoder, count: int, seed: int = 0,
                        batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """`count` generated images, child codes cycling through 0..N_C-1 (balanced conditions),
    z ~ N(0, I) from `seed`. -> (images [count, H, W, 3] in [-1, 1], conditions [count])."""
    conditions = np.arange(count, dtype=np.int32) % autoencoder.config.num_children
    z = tf.random.stateless_normal([count, autoencoder.config.z_dim], seed=[seed, 1])

    @tf.function(reduce_retracing=True)
    def run(child, noise):
        return inference.generate(autoencoder, child, noise)["image"]

    images = [run(tf.constant(conditions[s:s + batch_size]), z[s:s + batch_size]).numpy()
              for s in range(0, count, batch_size)]
    return np.concatenate(images), conditions


def _segmentation(pred, true) -> dict:
    count, size = true.shape[0], true.shape[1]
    baselines = {"all_foreground": np.ones_like(true),
                 "centred_ellipse": metrics.centred_ellipse_masks(count, size)}
    return {"iou": metrics.iou(pred, true), "dice": metrics.dice(pred, true),
            "baselines": {name: {"iou": metrics.iou(m, true), "dice": metrics.dice(m, true)}
                          for name, m in baselines.items()}}


def _clustering(predicted, labels, images, seed) -> dict:
    """ACC / NMI of the model's clusters, beside k-means on raw pixels (k = number of classes;
    pixels at up to 32x32 and at 8x8, the better of which is the baseline to beat)."""
    k = len(np.unique(labels))
    baselines = {}
    for size in sorted({min(images.shape[1], 32), 8}, reverse=True):
        pixels = tf.image.resize(images, [size, size], antialias=True).numpy()
        clusters = metrics.kmeans_labels(pixels.reshape(len(images), -1), k, seed=seed)
        baselines[f"kmeans_pixels_{size}px"] = {
            "acc": metrics.clustering_accuracy(labels, clusters),
            "nmi": metrics.normalized_mutual_information(labels, clusters)}
    return {"acc": metrics.clustering_accuracy(labels, predicted),
            "nmi": metrics.normalized_mutual_information(labels, predicted),
            "clusters_used": int(len(np.unique(predicted))), "baselines": baselines}


def _object_removal(removed, images, clean, masks) -> dict:
    """L1 / PSNR inside the true object region against the true clean background."""
    l1, psnr = metrics.masked_l1_psnr(removed, clean, masks)
    keep_l1, keep_psnr = metrics.masked_l1_psnr(images, clean, masks)
    # Trivial inpainting: every object pixel gets the image's mean colour outside the object.
    region = np.asarray(masks) > 0.5
    outside = np.where(region, 0.0, images).sum((1, 2)) / np.maximum(
        (~region).sum((1, 2)), 1)
    filled = np.where(region, outside[:, None, None, :], images)
    fill_l1, fill_psnr = metrics.masked_l1_psnr(filled, clean, masks)
    return {"l1": l1, "psnr": psnr,
            "baselines": {"object_left_in": {"l1": keep_l1, "psnr": keep_psnr},
                          "mean_colour_fill": {"l1": fill_l1, "psnr": fill_psnr}}}


def _generation(autoencoder, evaluator, examples, count, seed) -> dict:
    real_features, real_probs = evaluator(examples["image"])
    generated, conditions = generate_in_batches(autoencoder, count, seed)
    gen_features, gen_probs = evaluator(generated)
    cis = metrics.conditional_inception_score(gen_probs, conditions)
    out = {"evaluator": evaluator.name, "generated": int(count),
           "fid": metrics.fid(real_features, gen_features),
           "is": metrics.inception_score(gen_probs), "cis": cis["bcis"], "wcis": cis["wcis"]}
    half = len(real_features) // 2
    reference = {"fid_split_halves": metrics.fid(real_features[:half], real_features[half:]),
                 "is": metrics.inception_score(real_probs)}
    if "child" in examples:
        labels = np.asarray(examples["child"])
        # Codes are unsupervised: each is matched to the real class the evaluator most often
        # assigns its images to (Hungarian); images of unmatched codes are left out of CFID.
        mapping = metrics.match_conditions(conditions, gen_probs.argmax(1))
        keep = np.array([c in mapping for c in conditions])
        mapped = np.array([mapping.get(c, -1) for c in conditions])
        try:
            cfid = metrics.conditional_fid(real_features, labels, gen_features[keep],
                                           mapped[keep])
            out.update(cfid=cfid["wcfid"], bcfid=cfid["bcfid"], cfid_classes=cfid["classes"])
        except ValueError as error:  # too few images per class (a small folder)
            out["cfid_skipped"] = str(error)
        real_cis = metrics.conditional_inception_score(real_probs, labels)
        reference.update(cis=real_cis["bcis"], wcis=real_cis["wcis"],
                         evaluator_accuracy=float(np.mean(real_probs.argmax(1) == labels)))
    out["real_data"] = reference
    return out


def evaluate(autoencoder: AutoEncoder, examples: dict, evaluator=None,
             generated: int | None = None, seed: int = 0) -> dict:
    """The paper's Tables 1-2 metrics (and object removal) for held-out `examples` (numpy,
    from data.evaluation_batch); each section only where its ground truth exists."""
    images = np.asarray(examples["image"], np.float32)
    out = infer_in_batches(autoencoder, images)
    results = {"examples": int(len(images)),
               "reconstruction": {"l1": float(np.mean(np.abs(out["reconstruction"] - images))
                                              / 2)}}
    if "mask" in examples:
        results["segmentation"] = _segmentation(out["mask"], np.asarray(examples["mask"]))
    for level in ("parent", "child"):
        if level in examples:
            results[f"clustering_{level}"] = _clustering(out[level], np.asarray(examples[level]),
                                                         images, seed)
    if "parent" in examples:  # E_p's own parent head, for diagnosis (not the assignment)
        labels = np.asarray(examples["parent"])
        results["clustering_parent_shape_head"] = {
            "acc": metrics.clustering_accuracy(labels, out["shape_parent"]),
            "nmi": metrics.normalized_mutual_information(labels, out["shape_parent"])}
    if "background" in examples and "mask" in examples:
        results["object_removal"] = _object_removal(out["background"], images,
                                                    np.asarray(examples["background"]),
                                                    np.asarray(examples["mask"]))
    if evaluator is not None:
        results["generation"] = _generation(autoencoder, evaluator, examples,
                                            generated or len(images), seed)
    return results


def _f(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(results: dict, title: str = "") -> str:
    """A Markdown report of `evaluate` results: each metric beside its trivial baselines."""
    lines = [f"## {title}" if title else "## Evaluation", "",
             f"{results['examples']} held-out images"
             + (f", step {results['step']}" if "step" in results else "") + ".", "",
             "| task | metric | OneGAN | baselines |", "|---|---|---|---|"]

    def row(task, metric, value, baselines=None, digits=3):
        text = ", ".join(f"{name.replace('_', ' ')} {_f(v, digits)}"
                         for name, v in (baselines or {}).items())
        lines.append(f"| {task} | {metric} | {_f(value, digits)} | {text or '-'} |")

    if "segmentation" in results:
        seg = results["segmentation"]
        for metric in ("iou", "dice"):
            row("segmentation", metric.upper(), seg[metric],
                {k: v[metric] for k, v in seg["baselines"].items()})
    for level in ("parent", "child"):
        section = results.get(f"clustering_{level}")
        if section:
            for metric in ("acc", "nmi"):
                row(f"clustering ({level})", metric.upper(), section[metric],
                    {name.replace("kmeans_pixels_", "k-means on pixels "): v[metric]
                     for name, v in section["baselines"].items()})
    if "clustering_parent_shape_head" in results:
        head = results["clustering_parent_shape_head"]
        for metric in ("acc", "nmi"):
            row("clustering (parent, E_p head)", metric.upper(), head[metric])
    row("reconstruction", "L1 (0-1 scale)", results["reconstruction"]["l1"], digits=4)
    if "object_removal" in results:
        rem = results["object_removal"]
        row("object removal", "L1 in object (0-1 scale)", rem["l1"],
            {k: v["l1"] for k, v in rem["baselines"].items()}, digits=4)
        row("object removal", "PSNR in object (dB)", rem["psnr"],
            {k: v["psnr"] for k, v in rem["baselines"].items()}, digits=2)
    if "generation" in results:
        gen, ref = results["generation"], results["generation"]["real_data"]
        real = "real data"
        row("generation", "FID ↓", gen["fid"], {real + " (split halves)":
                                                 ref["fid_split_halves"]}, digits=2)
        row("generation", "IS ↑", gen["is"], {real: ref["is"]}, digits=2)
        if "cfid" in gen:
            row("generation", "CFID (= WCFID) ↓", gen["cfid"], digits=2)
            row("generation", "BCFID ↓", gen["bcfid"], digits=2)
        row("generation", "CIS (= BCIS) ↑", gen["cis"], {real: ref.get("cis")}, digits=2)
        row("generation", "WCIS", gen["wcis"], {real: ref.get("wcis")}, digits=2)
        lines += ["", f"Generation: {gen['generated']} images, evaluator {gen['evaluator']}"
                  + (f" (accuracy on the real held-out labels "
                     f"{ref['evaluator_accuracy']:.3f})" if "evaluator_accuracy" in ref
                     else "") + "."]
    notes = list(results.get("skipped", []))
    if "cfid_skipped" in results.get("generation", {}):
        notes.append("CFID: " + results["generation"]["cfid_skipped"])
    for note in notes:
        lines.append(f"\nSkipped: {note}")
    return "\n".join(lines) + "\n"
