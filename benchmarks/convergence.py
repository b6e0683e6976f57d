"""Convergence benchmark: does OneGAN learn every task on the built-in data within a CPU budget?

Usage (from the repository root; nothing else should run on the machine while it trains):

    python benchmarks/convergence.py                      # all three rows, ~75 min on 2 cores
    python benchmarks/convergence.py --variants=full      # the demo only (target: < 30 min)
    python benchmarks/convergence.py --seed=1             # another seed: runs/convergence/seed1

For each variant it trains the `shapes` demo from scratch with `python -m onegan_tf.train`
(timed), then runs `python -m onegan_tf.evaluate` on 2048 held-out synthetic images, and writes
ROOT/convergence.md (Tables 1-2 layout, the three rows side by side) and ROOT/convergence.json.
Variants (paper Sec. 5 "Ablation study"):

  full            the demo schedule: Phase I, fake reconstruction, then real reconstruction
  no_multi_phase  every path from step 0 (--multi_phase=false)
  phase1_only     the generation path only (--phase1_only)

A finished run is not retrained (its recorded training time is reused); delete ROOT/VARIANT to
start it over. `--seed=N` is passed to training (`--seed=N`: weights, data stream and held-out
images) and the runs go to runs/convergence/seed{N} unless `--root` is given. The targets of the
full row are checked and printed; the exit status is 1 when one is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "full": [],
    "no_multi_phase": ["--multi_phase=false"],
    "phase1_only": ["--phase1_only"],
}
# (section, metric, target): each target must also beat its best trivial baseline by MARGIN.
# clustering_parent is E_p's own parent head (the tree parent of E_c's child is reported as
# clustering_parent_tree).
TARGETS = [
    ("segmentation", "iou", 0.80), ("segmentation", "dice", 0.88),
    ("clustering_parent", "acc", 0.80), ("clustering_child", "nmi", 0.60),
]
MARGIN = 0.15
# Generation targets without a trivial baseline: (metric of the generation section, minimum).
GENERATION_TARGETS = [("shape_accuracy", 0.90), ("diversity", 0.5)]
MASK_AREA_TOLERANCE = 0.05  # |generated mean mask area - true objects' mean area|
REMOVAL_PSNR_MARGIN_DB = 3.0  # object removal PSNR over the mean-colour fill
BUDGET_SECONDS = 30 * 60


def run(cmd: list[str], log_path: Path) -> float:
    """Runs cmd with its output appended to log_path; returns the wall time. Raises on failure."""
    started = time.time()
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}; see {log_path}")
    return time.time() - started


def train_and_evaluate(root: Path, variant: str, examples: int, extra: list[str],
                       seed: int = 0) -> dict:
    """Trains ROOT/VARIANT with `seed` (unless already trained) and evaluates it; returns its
    metrics.json with "training_seconds" added."""
    run_dir = root / variant
    run_dir.mkdir(parents=True, exist_ok=True)
    timing_path = run_dir / "training_time.json"
    log_path = root / f"{variant}.log"
    if timing_path.exists():
        seconds = json.loads(timing_path.read_text())["seconds"]
        print(f"{variant}: already trained ({seconds / 60:.1f} min); evaluating", flush=True)
    else:
        print(f"{variant}: training (log: {log_path})", flush=True)
        seconds = run([sys.executable, "-m", "onegan_tf.train", f"--run_dir={run_dir}",
                       f"--seed={seed}", *VARIANTS[variant], *extra], log_path)
        timing_path.write_text(json.dumps({"seconds": seconds}) + "\n")
    run([sys.executable, "-m", "onegan_tf.evaluate", f"--run_dir={run_dir}",
         f"--examples={examples}"], log_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["training_seconds"] = seconds
    return metrics


def _best_baseline(section: dict, metric: str) -> float:
    """The best value of `metric` among the section's trivial baselines."""
    return max(b[metric] for b in section["baselines"].values())


def _get(metrics: dict, *keys):
    """metrics[k1][k2]..., or None where a key is missing."""
    for key in keys:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def _baseline_checks(metrics: dict) -> list[tuple[str, bool]]:
    """TARGETS: each metric against its target and its best trivial baseline + MARGIN."""
    checks = []
    for section, metric, target in TARGETS:
        if _get(metrics, section, metric) is None:
            checks.append((f"{section} {metric.upper()} missing", False))
            continue
        value = metrics[section][metric]
        baseline = _best_baseline(metrics[section], metric)
        checks.append((f"{section} {metric.upper()} {value:.3f} >= {target}", value >= target))
        checks.append((f"{section} {metric.upper()} {value:.3f} >= best baseline "
                       f"{baseline:.3f} + {MARGIN}", value >= baseline + MARGIN))
    return checks


def _generation_checks(metrics: dict) -> list[tuple[str, bool]]:
    """GENERATION_TARGETS and the generated masks' mean area against the true objects'."""
    checks = []
    for metric, target in GENERATION_TARGETS:
        value = _get(metrics, "generation", metric)
        checks.append((f"generation {metric} missing", False) if value is None else
                      (f"generation {metric} {value:.3f} >= {target}", value >= target))
    area = _get(metrics, "generation", "mask_area") or {}
    if "real_mean" not in area:
        checks.append(("generation mask area missing", False))
    else:
        gap = abs(area["generated_mean"] - area["real_mean"])
        checks.append((f"generated mask area {area['generated_mean']:.3f} within "
                       f"{MASK_AREA_TOLERANCE} of the true {area['real_mean']:.3f}",
                       gap <= MASK_AREA_TOLERANCE))
    return checks


def _removal_check(metrics: dict) -> tuple[str, bool]:
    """Object removal PSNR against the mean-colour fill + REMOVAL_PSNR_MARGIN_DB."""
    psnr = _get(metrics, "object_removal", "psnr")
    fill = _get(metrics, "object_removal", "baselines", "mean_colour_fill", "psnr")
    if psnr is None or fill is None:
        return ("object removal PSNR missing", False)
    return (f"object removal PSNR {psnr:.2f} dB >= mean-colour fill {fill:.2f} + "
            f"{REMOVAL_PSNR_MARGIN_DB} dB", psnr >= fill + REMOVAL_PSNR_MARGIN_DB)


def check_targets(metrics: dict, seconds: float) -> list[tuple[str, bool]]:
    """[(description, met)] for the time budget and every target of a row's metrics."""
    checks = [(f"trained in {seconds / 60:.1f} min <= 30 min", seconds <= BUDGET_SECONDS)]
    return (checks + _baseline_checks(metrics) + _generation_checks(metrics)
            + [_removal_check(metrics)])


def _fmt(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


# (header, digits, path into a row's metrics): the columns after "model" and "train min".
COLUMNS = [
    ("FID ↓", 2, ("generation", "fid")), ("IS ↑", 2, ("generation", "is")),
    ("CFID ↓", 2, ("generation", "cfid")), ("CIS ↑", 2, ("generation", "cis")),
    ("diversity", 3, ("generation", "diversity")),
    ("shape acc.", 3, ("generation", "shape_accuracy")),
    ("mask area", 3, ("generation", "mask_area", "generated_mean")),
    ("IoU", 3, ("segmentation", "iou")), ("DICE", 3, ("segmentation", "dice")),
    ("ACC parent (E_p)", 3, ("clustering_parent", "acc")),
    ("NMI parent (E_p)", 3, ("clustering_parent", "nmi")),
    ("ACC parent (tree)", 3, ("clustering_parent_tree", "acc")),
    ("NMI parent (tree)", 3, ("clustering_parent_tree", "nmi")),
    ("ACC child", 3, ("clustering_child", "acc")), ("NMI child", 3, ("clustering_child", "nmi")),
    ("rec. L1", 4, ("reconstruction", "l1")), ("removal PSNR", 2, ("object_removal", "psnr")),
]


def _reference_rows(m: dict) -> list[tuple[str, dict]]:
    """(name, {column header: value}) of the real data's own scores and the trivial baselines,
    from one row's metrics."""
    ref = _get(m, "generation", "real_data") or {}
    real = {"FID ↓": ref.get("fid_split_halves"), "IS ↑": ref.get("is"),
            "CIS ↑": ref.get("cis"), "shape acc.": ref.get("shape_accuracy"),
            "mask area": _get(m, "generation", "mask_area", "real_mean")}
    if _get(m, "generation", "diversity") is not None:
        real["diversity"] = 1.0
    rows = [("real data", real)]
    for name, b in (_get(m, "segmentation", "baselines") or {}).items():
        rows.append((name.replace("_", "-"), {"IoU": b["iou"], "DICE": b["dice"]}))
    parent = _get(m, "clustering_parent", "baselines") or {}
    for name, b in parent.items():
        cells = {"ACC parent (E_p)": b["acc"], "NMI parent (E_p)": b["nmi"],
                 "ACC parent (tree)": b["acc"], "NMI parent (tree)": b["nmi"]}
        child = _get(m, "clustering_child", "baselines", name) or {}
        cells.update({"ACC child": child.get("acc"), "NMI child": child.get("nmi")})
        rows.append((name.replace("kmeans_pixels_", "k-means on pixels, "), cells))
    fill = _get(m, "object_removal", "baselines", "mean_colour_fill", "psnr")
    rows.append(("mean-colour fill", {"removal PSNR": fill}))
    return rows


def table(rows: dict[str, dict]) -> str:
    """Tables 1-2 of the paper in one, per variant: generation (with the diversity within a
    code, the shape accuracy and mean area of generated masks), segmentation, clustering (the
    parent from E_p's head and from the tree of E_c's child); then, in italics, the real
    data's own scores and the trivial baselines."""
    headers = ["model", "train min"] + [h for h, _, _ in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, m in rows.items():
        cells = [name, f"{m['training_seconds'] / 60:.1f}"]
        cells += [_fmt(_get(m, *path), digits) for _, digits, path in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    for name, values in _reference_rows(next(iter(rows.values()))):
        cells = [f"*{name}*", ""] + [
            f"*{_fmt(values[h], digits)}*" if values.get(h) is not None else ""
            for h, digits, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None,
                        help="where the runs go (default runs/convergence/seed{SEED})")
    parser.add_argument("--seed", type=int, default=0, help="training seed (--seed=N)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of {', '.join(VARIANTS)}")
    parser.add_argument("--examples", type=int, default=2048, help="held-out images")
    parser.add_argument("train_flags", nargs="*",
                        help="extra flags for every training run, after --")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"--variants: unknown {', '.join(sorted(unknown))}")
    root = Path(args.root or f"runs/convergence/seed{args.seed}")
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    rows = {v: train_and_evaluate(root, v, args.examples, args.train_flags, args.seed)
            for v in variants}
    report = (f"# Convergence benchmark (shapes, 2 CPU cores, seed {args.seed})\n\n"
              + table(rows))
    checks = []
    if "full" in rows:
        checks = check_targets(rows["full"], rows["full"]["training_seconds"])
        report += "\nTargets (full row):\n\n" + "\n".join(
            f"- [{'x' if ok else ' '}] {text}" for text, ok in checks) + "\n"
    (root / "convergence.md").write_text(report)
    (root / "convergence.json").write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    print(report)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
