"""Evaluation of a model on held-out images with ground truth (paper Sec. 5).

`quick_metrics` is the cheap periodic evaluation run during training (segmentation IoU/DICE,
parent/child ACC and NMI on a fixed held-out subset, the mean area of generated masks).
`evaluate` is the full report of `python -m onegan_tf.evaluate`: those plus trivial baselines,
reconstruction L1, object removal against the true clean background (shapes), FID / IS / CFID /
CIS and the diversity within a code from an evaluator network (`onegan_tf.evaluator`), the
shape accuracy of generated masks (shapes) and their area against the true objects';
`markdown_table` renders it.

The parent of an image is reported twice: from E_p's own parent head (`clustering_parent`,
`eval/parent_*`) and as the code-tree parent of E_c's child (`clustering_parent_tree`,
`eval/parent_tree_*`), which agrees with the child by construction.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from onegan_tf.evaluation import metrics
from onegan_tf.nets.autoencoder import AutoEncoder
from onegan_tf.serving import inference

_ANALYSE = weakref.WeakKeyDictionary()  # autoencoder -> its traced batch function
_GENERATE = weakref.WeakKeyDictionary()  # autoencoder -> its traced generation function

# Clustering section -> (ground-truth key, infer_in_batches key, label).
CLUSTERINGS = {
    "parent": ("parent", "shape_parent", "parent (E_p head)"),
    "parent_tree": ("parent", "parent", "parent (tree of E_c's child)"),
    "child": ("child", "child", "child (E_c)"),
}
QUICK_GENERATED = 256  # images generated (fixed z) for the periodic mask-area check
QUICK_SEED = 0


def quick_metrics(autoencoder: AutoEncoder, examples: dict,
                  generated: int = QUICK_GENERATED) -> dict[str, float]:
    """The periodic evaluation: {"eval/iou", "eval/dice", "eval/precision", "eval/recall",
    "eval/mask_area", "eval/<section>_acc", "eval/<section>_nmi" for each of CLUSTERINGS,
    "eval/gen_mask_area", "eval/gen_mask_area_real"}, each where its ground truth exists.

    examples: dict of numpy arrays from data.evaluation_batch: "image", and whichever of
    "mask", "parent", "child" the dataset has. precision/recall are pixel_precision_recall of
    the masks predicted for the examples, mask_area their mean area; gen_mask_area is the mean
    area of `generated` masks from fixed codes and z; gen_mask_area_real the true objects'."""
    out = infer_in_batches(autoencoder, examples["image"])
    results = {}
    if "mask" in examples:
        results["eval/iou"] = metrics.iou(out["mask"], examples["mask"])
        results["eval/dice"] = metrics.dice(out["mask"], examples["mask"])
        results["eval/precision"], results["eval/recall"] = metrics.pixel_precision_recall(
            out["mask"], examples["mask"])
        results["eval/mask_area"] = metrics.mask_area(out["mask"])[0]
    for name, (truth, predicted, _) in CLUSTERINGS.items():
        if truth in examples:
            labels = examples[truth]
            results[f"eval/{name}_acc"] = metrics.clustering_accuracy(labels, out[predicted])
            results[f"eval/{name}_nmi"] = metrics.normalized_mutual_information(
                labels, out[predicted])
    masks = generate_in_batches(autoencoder, generated, QUICK_SEED)["mask"]
    results["eval/gen_mask_area"] = metrics.mask_area(masks)[0]
    if "mask" in examples:
        results["eval/gen_mask_area_real"] = metrics.mask_area(examples["mask"])[0]
    return results


def _traced_analyse(autoencoder: AutoEncoder):
    """The model's traced batch function images -> reconstruction-path and cluster outputs
    (traced once per model: periodic evaluation reuses it every time)."""
    run = _ANALYSE.get(autoencoder)
    if run is None:

        # autograph=False: nothing here needs it (the only branches test Python values), and
        # in long processes that build many models autograph's conversion cache was seen to
        # hand back another function's conversion ("tf__generate() missing ... 'z'").
        @tf.function(reduce_retracing=True, autograph=False)
        def run(batch):
            out = inference.analyse(autoencoder, batch)  # the encoders run once per batch
            return {"mask": out["mask"], "reconstruction": out["image"],
                    "background": out["background"], "parent": out["parent"],
                    "child": out["child"],
                    "shape_parent": tf.argmax(out["shape_parent_probs"], axis=-1)}
        _ANALYSE[autoencoder] = run
    return run


def infer_in_batches(autoencoder: AutoEncoder, images, batch_size: int = 128) -> dict:
    """Everything the reconstruction path and encoders give for images [N, H, W, 3] in [-1, 1]:
    "mask", "reconstruction", "background" (object removed), "parent" (tree parent of the
    child), "child", "shape_parent" (argmax of E_p's parent head) (numpy)."""
    run = _traced_analyse(autoencoder)
    parts = [{k: v.numpy() for k, v in run(tf.constant(images[s:s + batch_size])).items()}
             for s in range(0, len(images), batch_size)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _traced_generate(autoencoder: AutoEncoder):
    """The model's traced generation function (child [B], z [B, d_z]) -> {"image", "mask"}."""
    run = _GENERATE.get(autoencoder)
    if run is None:

        @tf.function(reduce_retracing=True, autograph=False)  # as in _traced_analyse
        def run(child, noise):
            out = inference.generate(autoencoder, child, noise)
            return {"image": out["image"], "mask": out["mask"]}
        _GENERATE[autoencoder] = run
    return run


def generate_in_batches(autoencoder: AutoEncoder, count: int, seed: int = 0,
                        batch_size: int = 128) -> dict:
    """`count` generated images, child codes cycling through 0..N_C-1 (balanced conditions),
    z ~ N(0, I) from `seed`. -> {"image" [count, H, W, 3] in [-1, 1], "mask"
    [count, H, W, 1] in [0, 1], "child" [count] (the codes)} (numpy)."""
    conditions = np.arange(count, dtype=np.int32) % autoencoder.config.num_children
    z = tf.random.stateless_normal([count, autoencoder.config.z_dim], seed=[seed, 1])
    run = _traced_generate(autoencoder)
    parts = [{k: v.numpy() for k, v in
              run(tf.constant(conditions[s:s + batch_size]), z[s:s + batch_size]).items()}
             for s in range(0, count, batch_size)]
    return {"image": np.concatenate([p["image"] for p in parts]),
            "mask": np.concatenate([p["mask"] for p in parts]), "child": conditions}


def _segmentation(pred, true) -> dict:
    count, size = true.shape[0], true.shape[1]
    baselines = {"all_foreground": np.ones_like(true),
                 "centred_ellipse": metrics.centred_ellipse_masks(count, size)}
    def scores(masks):
        precision, recall = metrics.pixel_precision_recall(masks, true)
        return {"iou": metrics.iou(masks, true), "dice": metrics.dice(masks, true),
                "precision": precision, "recall": recall}

    predicted_area, true_area = metrics.mask_area(pred), metrics.mask_area(true)
    return {**scores(pred),
            "mask_area": {"predicted_mean": predicted_area[0], "predicted_std": predicted_area[1],
                          "true_mean": true_area[0], "true_std": true_area[1]},
            "baselines": {name: scores(m) for name, m in baselines.items()}}


def _kmeans_baselines(labels, images, seed) -> dict:
    """{"kmeans_pixels_<S>px": {"acc", "nmi"}}: k-means on raw pixels (k = number of classes)
    at up to 32x32 and at 8x8, the trivial clusterings to beat."""
    k = len(np.unique(labels))
    baselines = {}
    for size in sorted({min(images.shape[1], 32), 8}, reverse=True):
        pixels = tf.image.resize(images, [size, size], antialias=True).numpy()
        clusters = metrics.kmeans_labels(pixels.reshape(len(images), -1), k, seed=seed)
        baselines[f"kmeans_pixels_{size}px"] = {
            "acc": metrics.clustering_accuracy(labels, clusters),
            "nmi": metrics.normalized_mutual_information(labels, clusters)}
    return baselines


def _clustering(predicted, labels, baselines: dict, label: str) -> dict:
    """{"label", "acc", "nmi", "clusters_used", "baselines"} of the model's clusters."""
    return {"label": label, "acc": metrics.clustering_accuracy(labels, predicted),
            "nmi": metrics.normalized_mutual_information(labels, predicted),
            "clusters_used": int(len(np.unique(predicted))), "baselines": baselines}


def _object_removal(removed, images, clean, masks) -> dict:
    """L1 / PSNR inside the true object region against the true clean background, and PSNR
    outside it (`visible_psnr`: how well the background path reproduces the background it
    sees: a completion of the hidden part is unlikely to be more faithful)."""
    l1, psnr = metrics.masked_l1_psnr(removed, clean, masks)
    _, visible_psnr = metrics.masked_l1_psnr(removed, clean, 1.0 - (np.asarray(masks) > 0.5))
    keep_l1, keep_psnr = metrics.masked_l1_psnr(images, clean, masks)
    # Trivial inpainting: every object pixel gets the image's mean colour outside the object.
    region = np.asarray(masks) > 0.5
    outside = np.where(region, 0.0, images).sum((1, 2)) / np.maximum(
        (~region).sum((1, 2)), 1)
    filled = np.where(region, outside[:, None, None, :], images)
    fill_l1, fill_psnr = metrics.masked_l1_psnr(filled, clean, masks)
    smooth_l1, smooth_psnr = metrics.masked_l1_psnr(metrics.smooth_fill(images, masks), clean,
                                                    masks)
    return {"l1": l1, "psnr": psnr, "visible_psnr": visible_psnr,
            "baselines": {"object_left_in": {"l1": keep_l1, "psnr": keep_psnr},
                          "mean_colour_fill": {"l1": fill_l1, "psnr": fill_psnr},
                          "smooth_fill": {"l1": smooth_l1, "psnr": smooth_psnr}}}


REFERENCE_PROTOCOL = ("InceptionV3 pool features (2048-d) at 299 px of 8-bit images, unbiased "
                      "covariances, {generated} generated images against {reference} training "
                      "objects")
IN_PROJECT_PROTOCOL = ("{evaluator} features of {generated} generated against {reference} "
                       "held-out images (comparable only within this project)")


def _evaluator_metrics(evaluator, generated: dict, examples: dict,
                       reference_features=None) -> tuple[dict, dict]:
    """FID / IS / CIS / WCIS / CFID and the diversity within a code of the generated images,
    and the real images' own scores (FID between their halves, IS, CIS, WCIS, the evaluator's
    accuracy). -> (generated section entries, real-data reference entries).

    An InceptionV3 evaluator (`reference_protocol`) follows the reference FID protocol: images
    quantised to 8 bits as PNGs would be, unbiased covariances, and `reference_features` (of
    training objects, `training_reference_features`) as the real set when given."""
    protocol = getattr(evaluator, "reference_protocol", False)
    prepare = _evaluator_input(evaluator)
    real_features, real_probs = evaluator(prepare(examples["image"]))
    conditions = generated["child"]
    gen_features, gen_probs = evaluator(prepare(generated["image"]))
    cis = metrics.conditional_inception_score(gen_probs, conditions)
    fid_real = real_features if reference_features is None else reference_features
    text = REFERENCE_PROTOCOL if protocol and reference_features is not None \
        else IN_PROJECT_PROTOCOL
    out = {"evaluator": evaluator.name,
           "fid": metrics.fid(fid_real, gen_features, unbiased=protocol),
           "fid_protocol": text.format(evaluator=evaluator.name, generated=len(gen_features),
                                       reference=len(fid_real)),
           "is": metrics.inception_score(gen_probs), "cis": cis["bcis"], "wcis": cis["wcis"]}
    half = len(real_features) // 2
    reference = {"fid_split_halves": metrics.fid(real_features[:half], real_features[half:]),
                 "is": metrics.inception_score(real_probs)}
    out.update(_diversity(gen_features, conditions, real_features, examples.get("child")))
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
    return out, reference


def _diversity(gen_features, conditions, real_features, real_classes) -> dict:
    """{"diversity", "diversity_generated", "diversity_real", "diversity_real_grouping"}
    (`metrics.within_code_diversity`), or {"diversity_skipped": why}."""
    try:
        result = metrics.within_code_diversity(gen_features, conditions, real_features,
                                               real_classes)
    except ValueError as error:  # fewer than 2 images per code, or constant real features
        return {"diversity_skipped": str(error)}
    grouping = (f"true child class ({result['real_groups']} classes)"
                if real_classes is not None else
                "all real images as one group (no class labels)")
    return {"diversity": result["diversity"], "diversity_generated": result["generated"],
            "diversity_real": result["real"], "diversity_real_grouping": grouping}


def _shape_accuracy(shape_classifier, generated: dict, examples: dict,
                    config) -> tuple[dict, dict]:
    """The shape accuracy of the generated masks (code parents matched to the families the
    classifier sees, `metrics.shape_accuracy`) and the classifier's accuracy on the true
    held-out masks. -> (generated section entries, real-data reference entries)."""
    families = shape_classifier(generated["mask"])
    out = {"shape_accuracy": metrics.shape_accuracy(generated["child"], families,
                                                    config.num_children, config.num_parents),
           "shape_families_seen": int(len(np.unique(families)))}
    reference = {}
    if "mask" in examples and "parent" in examples:
        truth = np.asarray(examples["parent"]).ravel()
        reference["shape_accuracy"] = float(np.mean(shape_classifier(examples["mask"])
                                                    == truth))
    return out, reference


def _evaluator_input(evaluator):
    """How images reach `evaluator`: quantised to 8 bits under the reference protocol."""
    return metrics.quantised if getattr(evaluator, "reference_protocol", False) else np.asarray


def training_reference_features(evaluator, batches, count: int) -> np.ndarray:
    """Evaluator features [count, D] of the first `count` training objects of `batches` (an
    iterable of dicts with "image" in [-1, 1], e.g. data.training_dataset), quantised to 8 bits
    for a reference-protocol evaluator; streamed, so only the features are kept."""
    prepare = _evaluator_input(evaluator)
    features, seen = [], 0
    for batch in batches:
        images = np.asarray(batch["image"])[:count - seen]
        features.append(evaluator(prepare(images))[0])
        seen += len(images)
        if seen >= count:
            return np.concatenate(features)
    raise ValueError(f"the training data has only {seen} images; the FID reference needs "
                     f"{count} (lower --fid_samples)")


def _generation(autoencoder, examples, count, seed, evaluator=None,
                shape_classifier=None, reference_features=None) -> dict:
    """The generation section: the generated masks' area against the true objects' (always),
    the evaluator's metrics (with an evaluator) and the shape accuracy (with a shape
    classifier), and under "real_data" the same measured on the held-out images."""
    generated = generate_in_batches(autoencoder, count, seed)
    out = {"generated": int(count),
           "mask_area": metrics.mask_area_comparison(generated["mask"], examples.get("mask"))}
    reference = {}
    if evaluator is not None:
        entries, real = _evaluator_metrics(evaluator, generated, examples, reference_features)
        out.update(entries)
        reference.update(real)
    if shape_classifier is not None:
        entries, real = _shape_accuracy(shape_classifier, generated, examples,
                                        autoencoder.config)
        out.update(entries)
        reference.update(real)
    out["real_data"] = reference
    return out


def evaluate(autoencoder: AutoEncoder, examples: dict, evaluator=None,
             generated: int | None = None, seed: int = 0, shape_classifier=None,
             reference_features=None) -> dict:
    """The paper's Tables 1-2 metrics (and object removal, the diversity within a code, the
    shape accuracy and area of generated masks) for held-out `examples` (numpy, from
    data.evaluation_batch); each section only where its ground truth exists. `generated`
    images (default as many as the examples) are drawn for the generation section; FID
    compares them with `reference_features` when given (else with the examples)."""
    images = np.asarray(examples["image"], np.float32)
    out = infer_in_batches(autoencoder, images)
    results = {"examples": int(len(images)),
               "reconstruction": {"l1": float(np.mean(np.abs(out["reconstruction"] - images))
                                              / 2)}}
    if "mask" in examples:
        results["segmentation"] = _segmentation(out["mask"], np.asarray(examples["mask"]))
    baselines = {}  # ground-truth key -> k-means baselines, shared by both parent sections
    for name, (truth, predicted, label) in CLUSTERINGS.items():
        if truth in examples:
            labels = np.asarray(examples[truth])
            if truth not in baselines:
                baselines[truth] = _kmeans_baselines(labels, images, seed)
            results[f"clustering_{name}"] = _clustering(out[predicted], labels,
                                                        baselines[truth], label)
    if "background" in examples and "mask" in examples:
        results["object_removal"] = _object_removal(out["background"], images,
                                                    np.asarray(examples["background"]),
                                                    np.asarray(examples["mask"]))
    results["generation"] = _generation(autoencoder, examples, generated or len(images), seed,
                                        evaluator, shape_classifier, reference_features)
    return results


def _f(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def _mean_std(mean, std, digits=3):
    """'mean ± std', or '-' without a mean."""
    return "-" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(results: dict, title: str = "") -> str:
    """A Markdown report of `evaluate` results: each metric beside its trivial baselines or
    the real data's own value."""
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
        for metric, name in (("iou", "IOU"), ("dice", "DICE"),
                             ("precision", "pixel precision"), ("recall", "pixel recall")):
            if metric in seg:  # precision/recall: absent from metrics.json written before them
                row("segmentation", name, seg[metric],
                    {k: v[metric] for k, v in seg["baselines"].items()})
        if "mask_area" in seg:
            area = seg["mask_area"]
            lines.append(f"| segmentation | predicted mask area (mean ± std) | "
                         f"{_mean_std(area['predicted_mean'], area['predicted_std'])} | "
                         f"true masks {_mean_std(area['true_mean'], area['true_std'])} |")
    for name in CLUSTERINGS:
        section = results.get(f"clustering_{name}")
        if section:
            for metric in ("acc", "nmi"):
                row(f"clustering: {section['label']}", metric.upper(), section[metric],
                    {key.replace("kmeans_pixels_", "k-means on pixels "): v[metric]
                     for key, v in section["baselines"].items()})
    row("reconstruction", "L1 (0-1 scale)", results["reconstruction"]["l1"], digits=4)
    if "object_removal" in results:
        rem = results["object_removal"]
        row("object removal", "L1 in object (0-1 scale)", rem["l1"],
            {k: v["l1"] for k, v in rem["baselines"].items()}, digits=4)
        row("object removal", "PSNR in object (dB)", rem["psnr"],
            {k: v["psnr"] for k, v in rem["baselines"].items()}, digits=2)
        if "visible_psnr" in rem:  # absent from metrics.json files written before it
            row("object removal", "PSNR of the visible background (dB)", rem["visible_psnr"],
                digits=2)
    notes = []
    if "generation" in results:
        notes = _generation_rows(results["generation"], row, lines)
    skipped = list(results.get("skipped", []))
    for key, what in (("cfid_skipped", "CFID"), ("diversity_skipped", "diversity")):
        if key in results.get("generation", {}):
            skipped.append(f"{what}: {results['generation'][key]}")
    for note in notes:
        lines += ["", note]
    for note in skipped:
        lines.append(f"\nSkipped: {note}")
    return "\n".join(lines) + "\n"


def _generation_rows(gen: dict, row, lines: list) -> list[str]:
    """Appends the generation rows of `markdown_table` to `lines` (through `row`); returns the
    notes to print below the table."""
    ref, real = gen["real_data"], "real data"
    if "fid" in gen:
        row("generation", "FID ↓", gen["fid"], {real + " (split halves)":
                                                 ref["fid_split_halves"]}, digits=2)
        row("generation", "IS ↑", gen["is"], {real: ref["is"]}, digits=2)
        if "cfid" in gen:
            row("generation", "CFID (= WCFID) ↓", gen["cfid"], digits=2)
            row("generation", "BCFID ↓", gen["bcfid"], digits=2)
        row("generation", "CIS (= BCIS) ↑", gen["cis"], {real: ref.get("cis")}, digits=2)
        row("generation", "WCIS (purity of a code's class; best 1)", gen["wcis"],
            {real: ref.get("wcis")}, digits=2)
    if "diversity" in gen:
        row("generation", "diversity within a code ↑ (generated / real)", gen["diversity"],
            {real: 1.0})
    if "shape_accuracy" in gen:
        row("generation", "shape accuracy of masks ↑", gen["shape_accuracy"],
            {"true masks": ref.get("shape_accuracy")})
    area = gen["mask_area"]
    lines.append(f"| generation | mask area (mean ± std) | "
                 f"{_mean_std(area['generated_mean'], area['generated_std'])} | "
                 + (f"{real} {_mean_std(area['real_mean'], area['real_std'])}"
                    if "real_mean" in area else "-") + " |")
    notes = []
    text = f"Generation: {gen['generated']} images"
    if "evaluator" in gen:
        text += f", evaluator {gen['evaluator']}" + (
            f" (accuracy on the real held-out labels {ref['evaluator_accuracy']:.3f})"
            if "evaluator_accuracy" in ref else "")
    notes.append(text + ".")
    if "fid_protocol" in gen:
        notes.append(f"FID: {gen['fid_protocol']}.")
    if "diversity" in gen:
        notes.append(f"Diversity: mean evaluator-feature distance "
                     f"{gen['diversity_generated']:.3f} between images generated for one code, "
                     f"{gen['diversity_real']:.3f} between real images of one group; real "
                     f"groups: {gen['diversity_real_grouping']}. 0 means z is ignored.")
    if "wcis" in gen:
        notes.append("WCIS measures how purely each code's images fall into one evaluator "
                     "class (1 = pure); it does not measure diversity within a code.")
    return notes
