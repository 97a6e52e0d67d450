"""The documentation's code runs and its short figures hold (within a tolerance).

- Every ```python block of README.md runs, in a fresh namespace, unless the line before
  its fence is ``<!-- docs-test: skip (why) -->`` (a long run, or a fragment that
  continues another block).
- The figures README.md lists under "Which figures CI checks" are recomputed here and
  compared with the text: the ``mlpx train`` summary line (README.md and
  docs/examples.md) and the digits snippet of docs/sklearn.md. The tolerance allows for
  the BLAS build and thread count, which change the last digit (see README.md).
"""

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b(.*?)-->")
#: How far a recomputed accuracy may lie from the documented one.
TOLERANCE = 0.01


def python_blocks(path):
    """``(line number, code, skip reason or None)`` of every ```python block of ``path``."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            marker = SKIP.search(lines[i - 1]) if i > 0 else None
            reason = marker.group(1).strip(" ():") or "marked" if marker else None
            blocks.append((start + 1, "\n".join(lines[i + 1:end]), reason))
            i = end
        i += 1
    return blocks


def run_block(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<docs block>", "exec"), {"__name__": "__docs__"})
    return out.getvalue()


README_BLOCKS = python_blocks(README)


def test_readme_has_blocks_and_the_markers_say_why():
    assert len(README_BLOCKS) >= 2
    run = [b for b in README_BLOCKS if b[2] is None]
    assert run, "every README block is skipped"
    for line, _, reason in README_BLOCKS:
        if reason is not None:
            assert len(reason) > 5, f"README.md:{line}: say why the block is skipped"


@pytest.mark.parametrize("line, code, reason", README_BLOCKS,
                         ids=[f"README.md:{b[0]}" for b in README_BLOCKS])
def test_readme_python_block_runs(line, code, reason, tmp_path, monkeypatch):
    if reason is not None:
        pytest.skip(f"README.md:{line}: {reason}")
    out = run_block(code, tmp_path, monkeypatch)
    if "evaluate(" in code:  # the Python API block: a sensible accuracy
        accuracy = float(re.search(r"accuracy=([0-9.]+)", out).group(1))
        assert 0.8 < accuracy <= 1.0, out


# ---------------------------------------------------------------- the figures
def documented(path, pattern):
    """Every figure ``pattern`` captures in ``path``."""
    return [float(v) for v in re.findall(pattern, path.read_text())]


SUMMARY = r"test accuracy (0\.\d{3,4}) \| test loss"


@pytest.fixture(scope="module")
def cli_accuracy():
    from mlpx import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["train", "--quiet"]) == 0
    return float(re.search(SUMMARY, out.getvalue()).group(1))


@pytest.mark.parametrize("doc", ["README.md", "docs/examples.md"])
def test_mlpx_train_summary_figure(doc, cli_accuracy):
    figures = documented(ROOT / doc, SUMMARY)
    assert figures, f"{doc} quotes no mlpx train summary line"
    default = figures[0]  # the first summary quoted is the default run's
    assert abs(default - cli_accuracy) <= TOLERANCE, (
        f"{doc} says mlpx train reaches {default}; this run reached {cli_accuracy}")


def test_sklearn_digits_snippet_figure(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    doc = ROOT / "docs" / "sklearn.md"
    line, code, _ = python_blocks(doc)[0]
    said = re.search(r"print\(clf\.score\(X_test, y_test\)\)\s*# (0\.\d+)", code)
    assert said, f"docs/sklearn.md:{line}: the snippet no longer quotes its score"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is reached
        out = run_block(code, tmp_path, monkeypatch)
    score = float(out.split()[0])
    assert abs(score - float(said.group(1))) <= TOLERANCE, out


def test_python_blocks_parser(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text("text\n```python\nx = 1\n```\n<!-- docs-test: skip (long run) -->\n"
                   "```python\ny = 2\n```\n")
    assert python_blocks(doc) == [(2, "x = 1", None), (6, "y = 2", "long run")]
