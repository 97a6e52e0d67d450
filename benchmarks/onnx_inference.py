"""Inference throughput of an exported model: ONNX Runtime vs mlpx on NumPy vs PyTorch.

``python -m benchmarks.onnx_inference`` (needs ``pip install -e ".[onnx]"``; PyTorch rows
when torch is installed, e.g. from the ``bench`` extra) times ``predict_proba`` of the
reference model 784-512-512-10 (ReLU, softmax, float32) on host NumPy batches of 1, 64
and 4096 rows:

==================  ===================================================================
row                 one call
==================  ===================================================================
``onnxruntime``     ``session.run(["predict_proba"], {"X": X})`` on the graph that
                    :func:`mlpx.export.export_onnx` wrote (CPUExecutionProvider)
``mlpx[numpy]``     ``model.predict_proba(X)`` (input checks included)
``torch[cpu]``      ``softmax(net(torch.from_numpy(X)))`` under ``torch.no_grad()``
==================  ===================================================================

Every row computes the same probabilities from the same weights (checked before the
clock starts). Timing is :func:`benchmarks.timing.interleaved` (rotated rounds, best
round by default); see ``benchmarks/README.md``. Prints a table and writes nothing
unless ``--out`` is given (a JSON of every round).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np

from benchmarks import timing

SIZES = (784, 512, 512, 10)
BATCHES = (1, 64, 4096)


def make_rows(batch: int, *, threads: int | None = None, with_torch: bool = True,
              seed: int = 0) -> dict:
    """name -> callable for one batch size, all computing the same probabilities."""
    import onnxruntime

    import mlpx

    model = mlpx.MLP(list(SIZES), activation="relu", seed=seed)
    rng = np.random.default_rng(seed + 1)
    X = (rng.random((batch, SIZES[0])) + 0.01).astype(np.float32)
    path = os.path.join(tempfile.mkdtemp(prefix="mlpx-onnx-bench-"), "model.onnx")
    model.export_onnx(path, predict=False)
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options,
                                           providers=["CPUExecutionProvider"])
    expected = model.predict_proba(X)
    got = session.run(["predict_proba"], {"X": X})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    rows = {
        "onnxruntime": lambda: session.run(["predict_proba"], {"X": X}),
        "mlpx[numpy]": lambda: model.predict_proba(X),
    }
    if with_torch:
        try:
            import torch
        except ImportError:
            return rows
        if threads:
            torch.set_num_threads(threads)
        layers: list = []
        params = [mlpx.to_numpy(p) for p in model.params]
        for i in range(len(SIZES) - 1):
            lin = torch.nn.Linear(SIZES[i], SIZES[i + 1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(params[2 * i].T.copy()))
                lin.bias.copy_(torch.from_numpy(params[2 * i + 1]))
            layers.append(lin)
            if i < len(SIZES) - 2:
                layers.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*layers).eval()

        def run_torch():
            with torch.no_grad():
                return torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()

        np.testing.assert_allclose(run_torch(), expected, rtol=1e-5, atol=1e-6)
        rows["torch[cpu]"] = run_torch
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_inference",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCHES)))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.5,
                        help="seconds per implementation per round")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads of ONNX Runtime and torch (default: theirs)")
    parser.add_argument("--stat", choices=("best", "median"), default="best")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default=None, help="write every round to this JSON file")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    results = {}
    print(f"MLP {'-'.join(map(str, SIZES))}, float32, predict_proba; samples/s "
          f"({args.stat} of {args.rounds} rounds)")
    for batch in batches:
        rows = make_rows(batch, threads=args.threads, with_torch=not args.no_torch)
        seconds = timing.interleaved(rows, rounds=args.rounds, budget=args.budget)
        results[batch] = seconds
        cells = [f"{name} {batch / timing.summary(s, args.stat):>12,.0f}"
                 for name, s in seconds.items()]
        ort_vs = timing.ratio(seconds["onnxruntime"], seconds["mlpx[numpy]"], args.stat)
        print(f"batch {batch:>5}: " + " | ".join(cells)
              + f" | onnxruntime/mlpx {ort_vs:.2f}x")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": timing.machine(), "sizes": SIZES, "stat": args.stat,
                       "seconds_per_call": {str(b): r for b, r in results.items()}}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
