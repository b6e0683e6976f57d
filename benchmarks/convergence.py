"""Convergence benchmark: does OneGAN learn every task on the built-in data within a CPU budget?

Usage (from the repository root; nothing else should run on the machine while it trains):

    python benchmarks/convergence.py                      # all three rows, ~70 min on 2 cores
    python benchmarks/convergence.py --variants=full      # the demo only (target: < 30 min)

For each variant it trains the `shapes` demo from scratch with `python -m onegan_tf.train`
(timed), then runs `python -m onegan_tf.evaluate` on 2048 held-out synthetic images, and writes
ROOT/convergence.md (Tables 1-2 layout, the three rows side by side) and ROOT/convergence.json.
Variants (paper Sec. 5 "Ablation study"):

  full            the demo schedule: Phase I, fake reconstruction, then real reconstruction
  no_multi_phase  every path from step 0 (--multi_phase=false)
  phase1_only     the generation path only (--phase1_only)

A finished run is not retrained (its recorded training time is reused); delete ROOT/VARIANT to
start it over. The targets of the full row are checked and printed; the exit status is 1 when
one is missed.
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
TARGETS = [
    ("segmentation", "iou", 0.80), ("segmentation", "dice", 0.88),
    ("clustering_parent", "acc", 0.80), ("clustering_child", "nmi", 0.60),
]
MARGIN = 0.15
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


def train_and_evaluate(root: Path, variant: str, examples: int, extra: list[str]) -> dict:
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
                       *VARIANTS[variant], *extra], log_path)
        timing_path.write_text(json.dumps({"seconds": seconds}) + "\n")
    run([sys.executable, "-m", "onegan_tf.evaluate", f"--run_dir={run_dir}",
         f"--examples={examples}"], log_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["training_seconds"] = seconds
    return metrics


def _best_baseline(section: dict, metric: str) -> float:
    return max(b[metric] for b in section["baselines"].values())


def check_targets(metrics: dict, seconds: float) -> list[tuple[str, bool]]:
    checks = [(f"trained in {seconds / 60:.1f} min <= 30 min", seconds <= BUDGET_SECONDS)]
    for section, metric, target in TARGETS:
        value = metrics[section][metric]
        baseline = _best_baseline(metrics[section], metric)
        checks.append((f"{section} {metric.upper()} {value:.3f} >= {target}", value >= target))
        checks.append((f"{section} {metric.upper()} {value:.3f} >= best baseline "
                       f"{baseline:.3f} + {MARGIN}", value >= baseline + MARGIN))
    return checks


def table(rows: dict[str, dict]) -> str:
    """Tables 1-2 of the paper in one: generation, segmentation, clustering per variant."""
    head = ("| model | train min | FID ↓ | IS ↑ | CFID ↓ | CIS ↑ | IoU | DICE | ACC parent "
            "| NMI parent | ACC child | NMI child | rec. L1 | removal PSNR |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    any_row = next(iter(rows.values()))

    def fmt(x, digits=3):
        return "-" if x is None else f"{x:.{digits}f}"

    for name, m in rows.items():
        gen = m.get("generation", {})
        lines.append(
            f"| {name} | {m['training_seconds'] / 60:.1f} | {fmt(gen.get('fid'), 2)} | "
            f"{fmt(gen.get('is'), 2)} | {fmt(gen.get('cfid'), 2)} | {fmt(gen.get('cis'), 2)} | "
            f"{fmt(m['segmentation']['iou'])} | {fmt(m['segmentation']['dice'])} | "
            f"{fmt(m['clustering_parent']['acc'])} | {fmt(m['clustering_parent']['nmi'])} | "
            f"{fmt(m['clustering_child']['acc'])} | {fmt(m['clustering_child']['nmi'])} | "
            f"{fmt(m['reconstruction']['l1'], 4)} | {fmt(m['object_removal']['psnr'], 2)} |")
    seg, cp, cc = (any_row["segmentation"]["baselines"], any_row["clustering_parent"],
                   any_row["clustering_child"])
    ref = any_row.get("generation", {}).get("real_data", {})
    lines.append(
        f"| *real data* | | *{fmt(ref.get('fid_split_halves'), 2)}* | *{fmt(ref.get('is'), 2)}* "
        f"| | *{fmt(ref.get('cis'), 2)}* | | | | | | | | |")
    lines.append(
        f"| *all-foreground mask* | | | | | | *{fmt(seg['all_foreground']['iou'])}* | "
        f"*{fmt(seg['all_foreground']['dice'])}* | | | | | | |")
    lines.append(
        f"| *centred ellipse* | | | | | | *{fmt(seg['centred_ellipse']['iou'])}* | "
        f"*{fmt(seg['centred_ellipse']['dice'])}* | | | | | | |")
    for name in cp["baselines"]:
        km = lambda s, k: s["baselines"][name][k]  # noqa: E731, B023
        lines.append(
            f"| *{name.replace('kmeans_pixels_', 'k-means on pixels, ')}* | | | | | | | | "
            f"*{fmt(km(cp, 'acc'))}* | *{fmt(km(cp, 'nmi'))}* "
            f"| *{fmt(km(cc, 'acc'))}* | *{fmt(km(cc, 'nmi'))}* | | |")
    removal = any_row["object_removal"]["baselines"]["mean_colour_fill"]["psnr"]
    lines.append(f"| *mean-colour fill* | | | | | | | | | | | | | *{fmt(removal, 2)}* |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="runs/convergence", help="where the runs go")
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
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    rows = {v: train_and_evaluate(root, v, args.examples, args.train_flags) for v in variants}
    report = "# Convergence benchmark (shapes, 2 CPU cores)\n\n" + table(rows)
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
