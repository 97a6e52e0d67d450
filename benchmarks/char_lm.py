"""A character-level language model of English words: mlpx against the same model in
PyTorch.

Data: Debian's ``wamerican`` word list (``/usr/share/dict/american-english``),
lower-cased, letters only; the words (not the pairs) are split 90/10 at random
(seeded), so held-out words are unseen. Each word becomes (window -> next character)
pairs with a boundary token (``mlpx.datasets.text_windows``).

Model (both libraries): Embedding(vocab, dim) -> concat -> Dense(hidden) -> tanh ->
Dense(vocab) -> softmax cross-entropy; Adam; the same epochs, batch size and learning
rate; float32. PyTorch starts from mlpx's initial weights (copied), so the two runs
differ only in their batch order and arithmetic. The held-out cross-entropy (nats per
character) and perplexity of both, and their training times, are written side by side
(default ``benchmarks/results/char_lm.md``).

Usage::

    python -m benchmarks.char_lm                       # defaults below
    python -m benchmarks.char_lm --epochs 2 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "char_lm.md"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS / torch threads for both libraries (default 1)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    import torch

    import mlpx
    from mlpx.datasets import load_word_list, text_windows

    torch.set_num_threads(args.threads)
    words = load_word_list("english")
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(words))
    n_test = len(words) // 10
    test_words = [words[i] for i in order[:n_test]]
    train_words = [words[i] for i in order[n_test:]]
    X, y, vocab = text_windows(train_words, args.window)
    Xt, yt, _ = text_windows(test_words, args.window, vocab=vocab)
    V = len(vocab)
    print(f"{len(train_words)} training words ({len(X)} pairs), {len(test_words)} held-out "
          f"words ({len(Xt)} pairs), vocabulary {V}", flush=True)

    # ---------------------------------------------------------------- mlpx
    lm = mlpx.LanguageModel(V, args.window, dim=args.dim, hidden_sizes=[args.hidden],
                            activation="tanh", seed=args.seed)
    init = [mlpx.to_numpy(p).copy() for p in lm.params]
    t0 = time.perf_counter()
    hist = lm.fit(X, y, epochs=args.epochs, batch_size=args.batch_size,
                  optimizer={"name": "adam", "lr": args.lr}, verbose=0)
    t_mlpx = time.perf_counter() - t0
    ev = lm.evaluate(Xt, yt)
    print(f"mlpx   : held-out CE {ev.loss:.4f}, perplexity {ev.perplexity:.3f}, "
          f"{t_mlpx:.1f} s", flush=True)
    samples = lm.generate(np.zeros((8, args.window), dtype=np.int64), 30, temperature=0.8,
                          seed=args.seed, stop_id=vocab.boundary_id)
    mlpx_words = ["".join(vocab.decode(s)) for s in samples]

    # ---------------------------------------------------------------- PyTorch
    torch.manual_seed(args.seed)
    emb = torch.nn.Embedding(V, args.dim)
    l1 = torch.nn.Linear(args.window * args.dim, args.hidden)
    l2 = torch.nn.Linear(args.hidden, V)
    with torch.no_grad():  # mlpx's initial weights (its W is (n_in, n_out))
        emb.weight.copy_(torch.from_numpy(init[0]))
        l1.weight.copy_(torch.from_numpy(init[1].T))
        l1.bias.copy_(torch.from_numpy(init[2]))
        l2.weight.copy_(torch.from_numpy(init[3].T))
        l2.bias.copy_(torch.from_numpy(init[4]))
    net = torch.nn.Sequential(emb, torch.nn.Flatten(), l1, torch.nn.Tanh(), l2)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    Xtr, ytr = torch.from_numpy(X), torch.from_numpy(y)
    trng = np.random.default_rng(args.seed + 1)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.from_numpy(trng.permutation(len(X)))
        for i in range(0, len(X), args.batch_size):
            idx = perm[i:i + args.batch_size]
            loss = torch.nn.functional.cross_entropy(net(Xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    t_torch = time.perf_counter() - t0
    with torch.no_grad():
        ce_torch = float(torch.nn.functional.cross_entropy(net(torch.from_numpy(Xt)),
                                                           torch.from_numpy(yt)))
    print(f"PyTorch: held-out CE {ce_torch:.4f}, perplexity {np.exp(ce_torch):.3f}, "
          f"{t_torch:.1f} s", flush=True)

    diff = abs(ev.loss - ce_torch)
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Character-level language model of English words: mlpx vs PyTorch",
        "",
        f"Command: `python -m benchmarks.char_lm --window {args.window} --dim {args.dim} "
        f"--hidden {args.hidden} --epochs {args.epochs} --batch-size {args.batch_size} "
        f"--lr {args.lr} --seed {args.seed} --threads {args.threads}`",
        "",
        f"Data: Debian wamerican, {len(words)} lower-case words; {len(train_words)} for "
        f"training ({len(X)} pairs), {len(test_words)} held out ({len(Xt)} pairs); "
        f"vocabulary {V} ({V - 1} characters and the boundary).",
        f"Model: Embedding({V}, {args.dim}) x window {args.window} -> Dense({args.hidden}) "
        f"-> tanh -> Dense({V}); Adam lr {args.lr}, batch {args.batch_size}, "
        f"{args.epochs} epochs, float32; PyTorch starts from mlpx's initial weights.",
        "",
        "| library | held-out cross-entropy (nats/char) | perplexity | training time (s) |",
        "|---|---|---|---|",
        f"| mlpx {mlpx.__version__} (NumPy {np.__version__}) | {ev.loss:.4f} | "
        f"{ev.perplexity:.3f} | {t_mlpx:.1f} |",
        f"| PyTorch {torch.__version__} | {ce_torch:.4f} | {np.exp(ce_torch):.3f} | "
        f"{t_torch:.1f} |",
        "",
        f"Difference in held-out cross-entropy: {diff:.4f} nats "
        f"({'within' if diff <= 0.02 else 'NOT within'} 0.02).",
        f"mlpx training loss per epoch: "
        f"{', '.join(f'{v:.4f}' for v in hist.history['loss'])}.",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, {args.threads} thread(s) for BLAS and "
        f"torch; Python {sys.version.split()[0]}; {platform.platform()}.",
        "",
        "Words drawn from the mlpx model (temperature 0.8, seed "
        f"{args.seed}): {', '.join(mlpx_words)}",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if diff <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
