"""Does ``torch.compile`` of mlpx's generic step beat running it eagerly on PyTorch?

``python -m benchmarks.torch_compile [--batch-sizes 64,1024] [--rounds 5] [--budget 0.5]
[--threads N] [--mode MODE]``

The step compiled is the generic one, written functionally over the training state (the
model's own ``loss_and_grads`` on a stand-in holding the given parameters, then the
optimizer's ``update`` rule per parameter; :func:`mlpx._fast.jax_step.model_with_params`
builds the stand-in), so nothing in mlpx is rewritten for PyTorch. Timed against
``model.train_step`` eagerly with fast paths off (the generic step, not
:mod:`mlpx._fast.torch_step`), and against the hand-written PyTorch loop of
:func:`benchmarks.workloads.make_torch`, in interleaved rounds (:mod:`benchmarks.timing`);
the compile time (first call) is reported separately. Prints one line per batch size
and the JSON of the whole run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from . import timing
from . import workloads as W


def make_compiled(sizes, n, *, optimizer="sgd", seed=0, mode=None):
    """mlpx's generic step on torch, as one function of the state, ``torch.compile``-d."""
    import torch

    from mlpx._fast.jax_step import model_with_params

    model, Xd, Yd = W.mlpx_model(W.torch_namespace(), sizes, n, optimizer=optimizer,
                                 seed=seed)
    opt = model.optimizer_
    names = tuple(model.optimizer_state_["slots"])
    xp = model.backend.xp
    decay = model.decay_mask

    def step(params, slots, t, hyper, X, Y):
        twin = model_with_params(model, params, None)
        loss, grads, _ = twin.loss_and_grads(X, Y, None, alpha=0.0)
        new_p, new_s = [], {s: [] for s in names}
        for i, (p, g, d) in enumerate(zip(params, grads, decay)):
            p, own = opt.update(p, g, {s: slots[s][i] for s in names}, hyper=hyper, t=t,
                                decay=d, xp=xp)
            new_p.append(p)
            for s in names:
                new_s[s].append(own[s])
        return new_p, new_s, loss

    compiled = torch.compile(step, mode=mode, dynamic=False)
    state = {"params": list(model.params), "slots": model.optimizer_state_["slots"],
             "t": 0}

    def run():
        t = state["t"] + 1
        hyper = opt.hyper(t - 1)
        with torch.no_grad():
            p, s, _ = compiled(state["params"], state["slots"], t, hyper, Xd, Yd)
        state["params"], state["slots"], state["t"] = p, s, t
    return run


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.torch_compile")
    p.add_argument("--batch-sizes", default="64,1024")
    p.add_argument("--workload", default="train_step_sgd")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--mode", default=None, help="torch.compile mode (default: default)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: pip install torch==2.13.0 (CPU wheel)",
              file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = W.WORKLOADS[args.workload]
    sizes, opt = tuple(spec["sizes"]), spec["optimizer"]
    out = {"machine": timing.machine(), "versions": timing.versions(),
           "torch_threads": torch.get_num_threads(), "workload": args.workload,
           "mode": args.mode, "rows": []}
    for n in [int(b) for b in args.batch_sizes.split(",")]:
        compiled = make_compiled(sizes, n, optimizer=opt, mode=args.mode)
        t0 = time.perf_counter()
        compiled()
        first = time.perf_counter() - t0
        impls = {"mlpx-compiled[torch]": compiled,
                 # the generic step eagerly (not mlpx's PyTorch fast step)
                 "mlpx[torch]": W.make_mlpx_on(W.torch_namespace(), sizes, n,
                                               optimizer=opt, fast=False),
                 "torch[cpu]": W.make_torch("cpu", sizes, n, optimizer=opt)}
        per_round = timing.interleaved(impls, rounds=args.rounds, budget=args.budget)
        med = {k: statistics.median(v) for k, v in per_round.items()}
        row = {"batch_size": n, "compile_s": first, "median_s": med,
               "compiled_over_eager": timing.ratio(per_round["mlpx-compiled[torch]"],
                                                   per_round["mlpx[torch]"], "median"),
               "eager_over_torch": timing.ratio(per_round["mlpx[torch]"],
                                                per_round["torch[cpu]"], "median"),
               "seconds_per_round": per_round}
        out["rows"].append(row)
        print(f"batch {n}: compile {first:.1f} s; median ms/step " + ", ".join(
            f"{k} {v * 1e3:.2f}" for k, v in med.items())
            + f"; compiled/eager throughput {row['compiled_over_eager']:.2f}, "
            f"mlpx eager/torch {row['eager_over_torch']:.2f}", file=sys.stderr)
    out["load_average_after"] = timing.machine().get("load_average")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
