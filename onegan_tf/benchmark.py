"""Throughput of one training iteration: `python -m onegan_tf.benchmark --preset=cub --phase=3`.

Builds the model at the preset's size on synthetic input, runs warm-up steps (tracing
excluded), then reports the median seconds per iteration, images/s, the share of time spent
waiting for input, peak host memory, FLOPs per image per iteration (from the traced graph) and
the achieved FLOP/s as a share of this machine's measured float32 matmul peak. Phase 1 = the
generation path; 2 = + fake reconstruction; 3 = all three paths. Prints a table and JSON.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

from absl import app, flags  # noqa: E402

from onegan_tf import cli  # noqa: E402
from onegan_tf import config as config_lib  # noqa: E402
from onegan_tf.training import distribute

PHASE_PATHS = {1: ("generation",), 2: ("generation", "fake"), 3: ("generation", "fake", "real")}

FLAGS = flags.FLAGS


def define_flags():
    """The CLI's flags (defined only when run as a program, so the module imports freely)."""
    flags.DEFINE_enum("preset", "cub", list(config_lib.PRESETS), "preset to size the model")
    flags.DEFINE_multi_integer("phase", [3], "1, 2 or 3 (repeatable: --phase=1 --phase=3)")
    flags.DEFINE_integer("steps", 10, "timed iterations")
    flags.DEFINE_integer("warmup", 2, "untimed iterations after tracing")
    flags.DEFINE_integer("batch", None, "global batch size (default: the preset's)")
    flags.DEFINE_boolean("jit_compile", False, "compile the step with XLA")
    flags.DEFINE_enum("mixed_precision", "float32", config_lib.MIXED_PRECISION,
                      "Keras dtype policy")
    flags.DEFINE_enum("strategy", "default", config_lib.STRATEGIES, "tf.distribute strategy")
    flags.DEFINE_string("json_out", None, "also write the results as JSON to this file")


def matmul_peak_flops(n: int = 2048, repeats: int = 10) -> float:
    """Measured float32 matmul FLOP/s of this machine (the denominator of the utilisation)."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / min(times)


def graph_flops(concrete_function) -> float:
    """Float operations of one call of a traced function (TF's graph profiler)."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    stats = model_analyzer.profile(concrete_function.graph, options=options)
    return float(stats.total_float_ops)


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN CPU kernels (onegan_tf turns them on unless
    TF_ENABLE_ONEDNN_OPTS says otherwise); None where this TensorFlow build does not say."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def benchmark_phase(preset: str, config, phase: int, steps: int, warmup: int) -> dict:
    import tensorflow as tf

    from onegan_tf.training import loop

    strategy = distribute.make_strategy(config.strategy)
    model = loop.build_model(config, strategy)
    model.load_discriminator_clones()
    model.set_paths(PHASE_PATHS[phase])
    size, batch = config.image_size, config.batch_size
    example = {"image": tf.random.uniform((batch, size, size, 3), -1, 1),
               "background": tf.random.uniform((batch, size, size, 3), -1, 1)}
    dataset = tf.data.Dataset.from_tensors(example).repeat().prefetch(2)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    inner = tf.function(model.train_step, jit_compile=config.jit_compile)
    step = tf.function(lambda data: strategy.run(inner, args=(data,)))

    trace_start = time.perf_counter()
    first = next(iterator)
    _sync(strategy, step(first))
    trace_seconds = time.perf_counter() - trace_start
    for _ in range(warmup):
        _sync(strategy, step(next(iterator)))

    iteration, waiting = [], []
    for _ in range(steps):
        start = time.perf_counter()
        data = next(iterator)
        fetched = time.perf_counter()
        _sync(strategy, step(data))
        done = time.perf_counter()
        iteration.append(done - start)
        waiting.append(fetched - start)

    flops_per_iteration = None
    if strategy.num_replicas_in_sync == 1:
        plain = tf.function(model.train_step)  # the graph profiler cannot read XLA clusters
        flops_per_iteration = graph_flops(plain.get_concrete_function(example))
    median = statistics.median(iteration)
    result = {
        "preset": preset,
        "image_size": size, "batch": batch, "phase": phase, "paths": "+".join(PHASE_PATHS[phase]),
        "jit_compile": config.jit_compile, "mixed_precision": config.mixed_precision,
        "replicas": strategy.num_replicas_in_sync, "trace_seconds": trace_seconds,
        "median_seconds_per_iteration": median, "images_per_second": batch / median,
        "input_wait_share": sum(waiting) / sum(iteration),
        "peak_host_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if flops_per_iteration is not None:
        result["gflops_per_image_iteration"] = flops_per_iteration / batch / 1e9
        result["achieved_gflops_per_second"] = flops_per_iteration / median / 1e9
    return result


def _sync(strategy, outputs):
    """Waits for the step: reads one scalar back to the host."""
    value = strategy.experimental_local_results(outputs["total"])[0]
    return float(value.numpy())


def format_table(results: list[dict], peak: float) -> str:
    header = ("phase", "paths", "batch", "XLA", "precision", "s/iter", "img/s", "input wait",
              "GFLOP/img", "GFLOP/s", "% of peak", "peak MiB")
    rows = [header]
    for r in results:
        achieved = r.get("achieved_gflops_per_second")
        rows.append((
            str(r["phase"]), r["paths"], str(r["batch"]), "on" if r["jit_compile"] else "off",
            r["mixed_precision"], f"{r['median_seconds_per_iteration']:.3f}",
            f"{r['images_per_second']:.2f}", f"{100 * r['input_wait_share']:.1f}%",
            f"{r['gflops_per_image_iteration']:.2f}" if achieved else "-",
            f"{achieved:.1f}" if achieved else "-",
            f"{100 * achieved * 1e9 / peak:.1f}%" if achieved else "-",
            f"{r['peak_host_memory_mib']:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    bad = [p for p in FLAGS.phase if p not in PHASE_PATHS]
    if bad:
        print(f"error: --phase={bad[0]}: choose 1, 2 or 3", file=sys.stderr)
        return 2
    try:
        overrides = dict(jit_compile=FLAGS.jit_compile, mixed_precision=FLAGS.mixed_precision,
                         strategy=FLAGS.strategy)
        if FLAGS.batch is not None:
            overrides["batch_size"] = FLAGS.batch
        config = config_lib.preset(FLAGS.preset, **overrides)
        if FLAGS.steps < 1 or FLAGS.warmup < 0:
            raise ValueError(f"--steps={FLAGS.steps} / --warmup={FLAGS.warmup}: need steps >= 1")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    peak = matmul_peak_flops()
    results = [benchmark_phase(FLAGS.preset, config, phase, FLAGS.steps, FLAGS.warmup)
               for phase in FLAGS.phase]
    onednn = onednn_enabled()
    kernels = {True: "on", False: "off", None: "unknown"}[onednn]
    print(f"preset {FLAGS.preset}: {config.image_size} px; matmul peak "
          f"{peak / 1e9:.0f} GFLOP/s (float32, measured); oneDNN CPU kernels {kernels}")
    print(format_table(results, peak))
    report = {"matmul_peak_gflops_per_second": peak / 1e9, "onednn": onednn,
              "results": results}
    print(json.dumps(report, indent=2))
    if FLAGS.json_out:
        from onegan_tf.fileio import atomic_write
        atomic_write(FLAGS.json_out, json.dumps(report, indent=2) + "\n")
    return 0


run = cli.command(main, define_flags)  # the console script


if __name__ == "__main__":
    run()
