"""Issue 10: one table of mlpx/floor and mlpx/torch before vs after the refactor.

Reads the JSON files written by ``issue10_before_after.sh`` (tags
``before-refactor-<label>-runK`` / ``after-refactor-<label>-runK``) and prints a Markdown
table per label: for each workload and batch size, each run's ratios (best round, and the
median of per-round ratios), plus the versions, BLAS, threads and load averages.

Usage: python benchmarks/results/issue10_summary.py [LABEL ...]   (default: 1thread)
"""

from __future__ import annotations

import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load(label):
    runs = {}
    for path in sorted(glob.glob(os.path.join(HERE, f"*-refactor-{label}-run*.json"))):
        name = os.path.basename(path)
        side = name.split("-refactor-")[0]
        run = name.split(f"-{label}-run")[1].split("-")[0]
        with open(path) as fh:
            runs[(side, int(run))] = json.load(fh)
    return runs


def describe(d):
    blas = "; ".join(f"{t['internal_api']} {d['blas'].get('version', '?')} "
                     f"({t['num_threads']} threads)"
                     for t in d["blas"]["threadpools"] if t["user_api"] == "blas")
    la, lb = d["machine"]["load_average"], d["load_average_after"]
    return (f"numpy {d['versions']['numpy']}, torch {d['versions']['torch']}, BLAS {blas}, "
            f"--threads {d['settings']['threads']}, torch threads "
            f"{d['machine'].get('torch_threads')}; load (1/5/15 min) "
            f"{la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f} -> {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}; "
            f"created {d['created']}")


def table(label):
    runs = load(label)
    if not runs:
        return f"No runs for {label}.\n"
    order = sorted(runs, key=lambda k: (k[1], k[0] != "before"))
    out = [f"## {label}", ""]
    for key in order:
        out.append(f"- {key[0]} run {key[1]}: {describe(runs[key])}")
    out.append("")
    for stat, field in (("best round", "ratios"),
                        ("median of per-round ratios", "ratios_median_of_rounds")):
        out += [f"### {label}, {stat}", ""]
        head = "| workload | batch | " + " | ".join(
            f"{r} {s} run{n}" for r in ("mlpx/floor", "mlpx/torch") for (s, n) in order) + " |"
        out += [head, "|" + "---|" * (2 + 2 * len(order))]
        first = runs[order[0]]["results"]
        for i, row in enumerate(first):
            cells = [row["workload"], str(row["batch_size"])]
            for ratio in ("mlpx/floor", "mlpx/torch"):
                for key in order:
                    other = runs[key]["results"][i]
                    assert (other["workload"], other["batch_size"]) == \
                        (row["workload"], row["batch_size"])
                    value = other[field].get(ratio)
                    cells.append("n/a" if value is None else f"{value:.2f}")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    labels = sys.argv[1:] or ["1thread"]
    print("\n".join(table(label) for label in labels))
