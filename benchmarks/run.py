"""``python -m benchmarks``: time mlpx against its floor and PyTorch, print one table.

See ``benchmarks/README.md``. The numbers are samples per second (batch size / median
seconds per call); ratios are medians of per-round ratios (see :mod:`benchmarks.timing`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys

from . import timing
from . import workloads as W

DEFAULT_BATCHES = (64, 256, 1024, 4096)


def _available_backends():
    from mlpx import _backend

    out = ["numpy"]
    if _backend.cuda_available():  # pragma: no cover - GPU only
        out.append("cupy")
    return out


def _torch_device(backend):
    return {"numpy": "cpu", "cupy": "cuda"}.get(backend)


def build_impls(workload, n, *, backends, torch=True, sklearn=False, generic=False,
                width=None, torch_compile=False):
    """name -> callable for one workload and batch size."""
    spec = dict(W.WORKLOADS[workload])
    sizes = tuple(spec["sizes"])
    if width is not None:
        sizes = (sizes[0],) + (width,) * (len(sizes) - 2) + (sizes[-1],)
    kind, opt = spec["kind"], spec["optimizer"]
    impls = {}
    for b in backends:
        if b in W.OTHER_BACKENDS:
            if kind == "train":
                impls.update(other_impls(b, sizes, n, opt or "sgd", torch=torch,
                                         torch_compile=torch_compile))
            continue
        impls[f"mlpx[{b}]"] = W.make_mlpx(b, sizes, n, optimizer=opt or "sgd", kind=kind)
        if generic and kind == "train":
            impls[f"mlpx-generic[{b}]"] = W.make_mlpx(b, sizes, n, optimizer=opt or "sgd",
                                                      kind=kind, fast=False)
        impls[f"floor[{b}]"] = W.make_floor(b, sizes, n, kind=kind)
        dev = _torch_device(b)
        if torch and dev in W.torch_devices():
            impls[f"torch[{dev}]"] = W.make_torch(dev, sizes, n, optimizer=opt or "sgd",
                                                  kind=kind)
    if sklearn and "numpy" in backends:
        impls["sklearn[cpu]"] = W.make_sklearn(sizes, n, optimizer=opt, kind=kind)
    return impls, sizes


def other_impls(b, sizes, n, opt, *, torch=True, torch_compile=False):
    """mlpx on a namespace other than NumPy/CuPy, and that library's hand-written step."""
    xp = W.namespace(b)
    impls = {f"mlpx[{b}]": W.make_mlpx_on(xp, sizes, n, optimizer=opt)}
    if b == "torch" and torch_compile:
        from .torch_compile import make_compiled

        impls["mlpx-compiled[torch]"] = make_compiled(sizes, n, optimizer=opt)
    if b == "jax":
        impls["mlpx-generic[jax]"] = W.make_mlpx_on(xp, sizes, n, optimizer=opt, fast=False)
        impls["jax-jit[cpu]"] = W.make_jax_jit(sizes, n, optimizer=opt)
    if b == "torch" and torch:
        impls["torch[cpu]"] = W.make_torch("cpu", sizes, n, optimizer=opt)
    return impls


def missing_backends(backends):
    """``{name: message}`` for the libraries of ``backends`` that are not installed."""
    out = {}
    for b in backends:
        if b in W.OTHER_BACKENDS:
            try:
                W.namespace(b)
            except ImportError as exc:
                out[b] = str(exc)
    return out


#: (ratio name, numerator row, denominator row) across libraries
CROSS_RATIOS = (("mlpx/jax-jit[jax]", "mlpx[jax]", "jax-jit[cpu]"),
                ("eager/jax-jit[jax]", "mlpx-generic[jax]", "jax-jit[cpu]"),
                ("mlpx/torch[torch]", "mlpx[torch]", "torch[cpu]"),
                ("compiled/torch[torch]", "mlpx-compiled[torch]", "torch[cpu]"),
                ("mlpx[jax]/mlpx[numpy]", "mlpx[jax]", "mlpx[numpy]"),
                ("mlpx[torch]/mlpx[numpy]", "mlpx[torch]", "mlpx[numpy]"))


def ratios_for(names, per_round, stat="best"):
    """The ratios the issue asks for, per backend: mlpx/torch, mlpx/floor, torch/floor."""
    out = {}

    def r(a, b):
        return timing.ratio(a, b, stat)

    for name in names:
        if not name.startswith("mlpx["):
            continue
        b = name[5:-1]
        dev = _torch_device(b)
        floor, torch_ = f"floor[{b}]", f"torch[{dev}]"
        suffix = "" if b == "numpy" else f"[{b}]"
        if torch_ in per_round:
            out[f"mlpx/torch{suffix}"] = r(per_round[name], per_round[torch_])
        if floor in per_round:
            out[f"mlpx/floor{suffix}"] = r(per_round[name], per_round[floor])
            if torch_ in per_round:
                out[f"torch/floor{suffix}"] = r(per_round[torch_],
                                                           per_round[floor])
            gen = f"mlpx-generic[{b}]"
            if gen in per_round:
                out[f"generic/floor{suffix}"] = r(per_round[gen],
                                                             per_round[floor])
        if "sklearn[cpu]" in per_round and b == "numpy" and floor in per_round:
            out["sklearn/floor"] = r(per_round["sklearn[cpu]"], per_round[floor])
    for key, a, b in CROSS_RATIOS:
        if a in per_round and b in per_round:
            out[key] = r(per_round[a], per_round[b])
    return out


#: mlpx performs the floor's matrix products plus its own work, so a ratio mlpx/floor above
#: this means the floor's rounds were slowed by something else (a disturbed run).
DISTURBED_ABOVE = 1.02


def disturbed(ratios):
    """The mlpx/floor ratios of one row that only a disturbed run can give.

    mlpx's step runs the same matrix products as the floor plus element-wise work, so it
    cannot honestly be faster than the floor; a ratio above :data:`DISTURBED_ABOVE` says
    the floor's rounds met a busier moment of the machine than mlpx's.
    """
    return {k: v for k, v in ratios.items()
            if k.startswith("mlpx/floor") and v > DISTURBED_ABOVE}


def run(workloads, batch_sizes, *, backends, rounds, budget, torch=True, sklearn=False,
        generic=False, width=None, stat="best", log=print, torch_compile=False):
    """Time everything; return the JSON-ready result dict."""
    import statistics

    results = []
    for wl in workloads:
        for n in batch_sizes:
            impls, sizes = build_impls(wl, n, backends=backends, torch=torch,
                                       sklearn=sklearn, generic=generic, width=width,
                                       torch_compile=torch_compile)
            per_round = timing.interleaved(impls, rounds=rounds, budget=budget)
            row = {"workload": wl, "sizes": list(sizes), "batch_size": n, "stat": stat,
                   "samples_per_s": {k: n / timing.summary(v, stat)
                                     for k, v in per_round.items()},
                   "samples_per_s_median": {k: n / statistics.median(v)
                                            for k, v in per_round.items()},
                   "seconds_per_round": per_round,
                   "ratios": ratios_for(list(impls), per_round, stat),
                   "ratios_median_of_rounds": ratios_for(list(impls), per_round, "median")}
            row["disturbed"] = disturbed(row["ratios"])
            results.append(row)
            log(_row_text(row))
    return results


def _row_text(row):
    sps = "  ".join(f"{k}={v:,.0f}/s" for k, v in row["samples_per_s"].items())
    rat = "  ".join(f"{k}={v:.2f}" for k, v in row["ratios"].items())
    flag = "  DISTURBED (mlpx beat its floor)" if row.get("disturbed") else ""
    return f"  {row['workload']} batch {row['batch_size']}: {sps}  |  {rat}{flag}"


def disturbed_note(results):
    """One warning line per row where mlpx beat the matrix-product floor, else ''."""
    lines = [f"WARNING: {r['workload']} batch {r['batch_size']}: "
             + ", ".join(f"{k}={v:.2f}" for k, v in r["disturbed"].items())
             + " - mlpx cannot beat the bare products it runs; this run was disturbed by "
             "other work on the machine. Measure again when `uptime` shows a low load."
             for r in results if r.get("disturbed")]
    return "\n".join(lines)


def table(results, fmt="text"):
    """One table per workload: samples/s per implementation and batch size, then ratios."""
    lines = []
    by_wl = {}
    for r in results:
        by_wl.setdefault(r["workload"], []).append(r)
    for wl, rows in by_wl.items():
        impls = list(rows[0]["samples_per_s"])
        rats = []
        for r in rows:
            for k in r["ratios"]:
                if k not in rats:
                    rats.append(k)
        sizes = "-".join(map(str, rows[0]["sizes"]))
        title = (f"{wl} ({sizes}, float32): samples/s ({rows[0].get('stat', 'best')} round), "
                 "ratios of throughput")
        head = ["batch"] + impls + rats
        body = []
        for r in rows:
            body.append([str(r["batch_size"])]
                        + [f"{r['samples_per_s'][k]:,.0f}" for k in impls]
                        + [f"{r['ratios'][k]:.2f}" if k in r["ratios"] else "" for k in rats])
        if fmt == "markdown":
            lines.append(f"**{title}**\n")
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join("---:" for _ in head) + "|")
            for b in body:
                lines.append("| " + " | ".join(b) + " |")
            lines.append("")
        else:
            widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
            lines.append(title)
            lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
            for b in body:
                lines.append("  ".join(c.rjust(w) for c, w in zip(b, widths)))
            lines.append("")
    return "\n".join(lines)


def plot(results, path):
    """Throughput against batch size, one panel per workload (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_wl = {}
    for r in results:
        by_wl.setdefault(r["workload"], []).append(r)
    fig, axes = plt.subplots(1, len(by_wl), figsize=(5.5 * len(by_wl), 4.2), squeeze=False)
    for ax, (wl, rows) in zip(axes[0], by_wl.items()):
        for impl in rows[0]["samples_per_s"]:
            xs = [r["batch_size"] for r in rows]
            ys = [r["samples_per_s"][impl] for r in rows]
            style = "--" if impl.startswith("floor") else "-"
            ax.plot(xs, ys, style, marker="o", label=impl)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples / s")
        ax.set_title(f"{wl} ({'-'.join(map(str, rows[0]['sizes']))})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="train_step_sgd",
                   help="comma-separated, or 'all': " + ", ".join(W.WORKLOADS))
    p.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_BATCHES)))
    p.add_argument("--width", type=int, default=None,
                   help="hidden width (default: the workload's own)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    p.add_argument("--budget", type=float, default=0.25,
                   help="seconds per implementation per round (default 0.25)")
    p.add_argument("--backends", default=None,
                   help="comma-separated mlpx backends: numpy, cupy, torch, jax, dask, "
                        "array_api_strict (default: numpy, and cupy when a CUDA device "
                        "answers); jax adds the hand-written jax-jit row, torch the "
                        "hand-written torch row")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--sklearn", action="store_true", help="add scikit-learn (CPU)")
    p.add_argument("--torch-compile", action="store_true",
                   help="with --backends torch: add mlpx's generic step under "
                        "torch.compile (compiles per batch size: minutes on 2 cores)")
    p.add_argument("--generic", action="store_true",
                   help="add mlpx with fast paths switched off")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"),
                   help="directory for JSON, Markdown and PNG (default benchmarks/results)")
    p.add_argument("--tag", default=None, help="file name prefix (default: the workloads)")
    p.add_argument("--plot", action="store_true", help="also write a PNG plot")
    p.add_argument("--no-save", action="store_true", help="print only")
    p.add_argument("--stat", choices=("best", "median"), default="best",
                   help="summary over rounds: each implementation's best round (default) "
                        "or the median of per-round ratios")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every library (BLAS, OpenMP, torch, mlpx's helper); "
                        "default: each library's own choice")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: batches 64 and 1024, 2 rounds of 0.1 s")
    args = p.parse_args(argv)

    workloads = list(W.WORKLOADS) if args.workloads == "all" else \
        [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in W.WORKLOADS]
    if unknown:
        p.error(f"unknown workloads {unknown}; valid: {list(W.WORKLOADS)}")
    batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    rounds, budget = args.repeats, args.budget
    if args.quick:
        batches, rounds, budget = [64, 1024], 2, 0.1
    backends = ([b.strip() for b in args.backends.split(",") if b.strip()]
                if args.backends else _available_backends())
    absent = missing_backends(backends)
    for b, why in absent.items():
        print(f"{b}: left out: {why}", file=sys.stderr)
    backends = [b for b in backends if b not in absent]
    missing = [b for b in backends if b == "cupy" and b not in _available_backends()]
    if missing:
        print("cupy: no CUDA device here; skipping it.", file=sys.stderr)
        backends = [b for b in backends if b not in missing]
        if not backends:
            p.error("--backends names only cupy, and CuPy or a CUDA device is missing here: "
                    "nothing to measure (add numpy, or run on a GPU machine)")

    if args.threads:
        if os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
            p.error("--threads must be given to `python -m benchmarks` itself (it is applied "
                    "before NumPy loads)")
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    info = timing.machine()
    print(f"device: {info['device_label']} ({info['cpu_model']}, {info['n_cpus']} CPUs); "
          f"load {info.get('load_average')}; rounds={rounds} budget={budget}s",
          file=sys.stderr)
    results = run(workloads, batches, backends=backends, rounds=rounds, budget=budget,
                  torch=not args.no_torch, sklearn=args.sklearn, generic=args.generic,
                  width=args.width, stat=args.stat, torch_compile=args.torch_compile,
                  log=lambda s: print(s, file=sys.stderr, flush=True))
    text = table(results)
    print(text)
    note = disturbed_note(results)
    if note:
        print(note)
    if args.no_save:
        return 0
    after = timing.machine().get("load_average")
    payload = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(argv if argv is not None
                                                       else sys.argv[1:]),
        "machine": info, "load_average_after": after,
        "versions": timing.versions(), "blas": timing.blas_info(),
        "settings": {"dtype": "float32", "batch_sizes": batches, "rounds": rounds,
                     "threads": args.threads, "stat": args.stat,
                     "budget_s": budget, "backends": backends, "workloads": workloads,
                     "width": args.width, "lr": W.LR, "data": "uniform [0.01, 1.01)"},
        "missing": absent,
        "results": results,
    }
    os.makedirs(args.out, exist_ok=True)
    devices = [info["device_label"]]
    if "cuda_device" in info:  # pragma: no cover - GPU only
        devices.append(timing.slug(info["cuda_device"]))
    stem = f"{args.tag or '-'.join(workloads)}-{'-'.join(devices)}"
    if args.threads:
        stem += f"-{args.threads}thread"
    base = os.path.join(args.out, stem)
    with open(base + ".json", "w") as fh:
        json.dump(payload, fh, indent=1)
    with open(base + ".md", "w") as fh:
        fh.write(f"Command: `{payload['command']}`  \n")
        fh.write(f"Device: {info['device_label']} ({info['cpu_model']}); "
                 f"numpy {payload['versions']['numpy']}, torch "
                 f"{payload['versions']['torch']}; {rounds} rounds x {budget} s, "
                 f"summary: {args.stat} round; "
                 f"load average {info.get('load_average')} -> {after}\n\n")
        fh.write(table(results, fmt="markdown"))
        if note:
            fh.write("\n" + note.replace("\n", "  \n") + "\n")
    print(f"wrote {base}.json and {base}.md", file=sys.stderr)
    if args.plot:
        print(f"wrote {plot(results, base + '.png')}", file=sys.stderr)
    return 0
