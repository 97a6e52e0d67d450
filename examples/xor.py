"""XOR with a 2-2-1 ReLU network: linear output, mean squared error (the textbook's).

First the exact solution the textbook gives (W = [[1, 1], [1, 1]], c = [0, -1],
w = [1, -2], b = 0) is loaded into the network to show it represents XOR exactly; then
the same network is trained by full-batch gradient descent from --seeds random
initialisations. Two hidden ReLU units are the bare minimum, and some starts end with
a dead unit or in a local minimum: the script reports how many seeds solve XOR.

    python examples/xor.py
    python examples/xor.py --seeds 50 --plot xor.png
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import mlpx
from mlpx.toy import make_xor


def textbook_solution():
    """The weights the textbook writes down: h = relu(x W + c), y = h w + b."""
    W = np.array([[1.0, 1.0], [1.0, 1.0]])
    c = np.array([0.0, -1.0])
    w = np.array([[1.0], [-2.0]])
    b = np.array([0.0])
    return [W, c, w, b]


def build(seed, width=2, init="normal"):
    return mlpx.MLP([2, width, 1], activation="relu", loss="mse", init=init,
                    dtype="float64", seed=seed)


def train_one(X, y, seed, *, epochs, lr, width=2, init="normal"):
    model = build(seed, width, init)
    model.fit(X, y.astype(np.float64), epochs=epochs, batch_size=None,
              optimizer={"name": "sgd", "lr": lr}, shuffle=False, verbose=0)
    out = mlpx.to_numpy(model.predict(X))[:, 0]
    solved = bool(np.all(np.abs(out - y) < 0.5))
    return model, out, solved


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="random starts to try")
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=0.1,
                        help="learning rate of full-batch gradient descent")
    parser.add_argument("--width", type=int, default=2,
                        help="hidden ReLU units (the textbook's net has 2)")
    parser.add_argument("--init", default="normal",
                        help="weight initializer: normal (N(0, 1)), he_normal, "
                             "glorot_uniform, ...")
    parser.add_argument("--plot", default=None,
                        help="save the decision boundary of the first solving seed here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    say = (lambda *a: None) if args.quiet else print

    X, y = make_xor()
    exact = build(0, 2)
    exact.set_params(textbook_solution())
    exact_out = mlpx.to_numpy(exact.predict(X))[:, 0]
    say(f"textbook weights: outputs {np.round(exact_out, 6).tolist()} for targets {y.tolist()}")

    solved_seeds = []
    first = None
    for seed in range(args.seeds):
        model, out, solved = train_one(X, y, seed, epochs=args.epochs, lr=args.lr,
                                       width=args.width, init=args.init)
        say(f"seed {seed:3d}: outputs {np.round(out, 3).tolist()} "
            f"{'solved' if solved else 'NOT solved'}")
        if solved:
            solved_seeds.append(seed)
            if first is None:
                first = model
    if args.plot and first is not None:
        from mlpx.plotting import plot_decision_boundary

        plot_decision_boundary(first, X, y, args.plot,
                               title=f"XOR, 2-{args.width}-1 ReLU (seed {solved_seeds[0]})")
    print(f"XOR 2-{args.width}-1 ReLU, linear output, MSE, full-batch gradient descent lr "
          f"{args.lr:g}, {args.epochs} epochs, init {args.init}: solved from "
          f"{len(solved_seeds)} of {args.seeds} random initialisations; the textbook's "
          "weights solve it exactly")
    return {"exact": exact_out, "solved": len(solved_seeds), "tried": args.seeds}


if __name__ == "__main__":
    main()
    sys.exit(0)
