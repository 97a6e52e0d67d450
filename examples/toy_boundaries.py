"""Decision boundaries on 2-D toy data generated in code: XOR, two moons, spirals.

Trains a small ReLU MLP (softmax output, Adam) on each problem and draws its decision
regions with the training points in one PNG of three panels.

    python examples/toy_boundaries.py --out toy_boundaries.png
"""

from __future__ import annotations

import argparse
import sys

import mlpx
from mlpx.toy import make_moons, make_spirals, make_xor


def problems(seed):
    """(name, X, y, hidden widths, epochs) for each panel."""
    return [
        ("XOR (noisy)", *make_xor(200, noise=0.15, seed=seed), [8], 200),
        ("two moons", *make_moons(300, noise=0.15, seed=seed), [32, 32], 200),
        ("spirals (3 arms)", *make_spirals(450, n_classes=3, noise=0.15, seed=seed),
         [64, 64], 400),
    ]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="toy_boundaries.png", help="PNG to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiply every problem's epochs (e.g. 0.1 for a quick look)")
    parser.add_argument("--resolution", type=int, default=200)
    args = parser.parse_args(argv)

    from mlpx.plotting import _require_matplotlib, plot_decision_boundary

    Figure = _require_matplotlib()
    fig = Figure(figsize=(15, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    results = {}
    for ax, (name, X, y, hidden, epochs) in zip(axes, problems(args.seed)):
        n_classes = int(y.max()) + 1
        model = mlpx.MLP([2, *hidden, n_classes], activation="relu", seed=args.seed)
        epochs = max(1, int(round(epochs * args.epochs_scale)))
        model.fit(X, y, epochs=epochs, batch_size=32, optimizer={"name": "adam", "lr": 0.01},
                  verbose=0)
        accuracy = model.evaluate(X, y).accuracy
        results[name] = accuracy
        arch = "-".join(map(str, model.layer_sizes))
        plot_decision_boundary(model, X, y, ax=ax, resolution=args.resolution,
                               title=f"{name}\n{arch} ReLU, training accuracy {accuracy:.3f}")
        print(f"{name}: {arch} ReLU/softmax, Adam lr 0.01, {epochs} epochs: training "
              f"accuracy {accuracy:.3f}")
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
