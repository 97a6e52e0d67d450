"""Words as input: character embeddings in a feedforward network (Bengio et al., 2003).

Data: the word lists Debian ships (``apt-get install wamerican wfrench wngerman``),
lower-cased, letters only.

1. A character-level language model per language (``mlpx.LanguageModel``): the previous
   ``--window`` characters, each a learned vector, concatenated into an MLP that predicts
   the next character. It reports held-out perplexity and draws new words with a
   temperature and a seed; the words it invents that are not in the list are marked.
2. A language identifier of single words: a ``Sequential`` of an ``Embedding`` of the
   word's first ``--length`` characters (padded), a hidden ReLU layer and a softmax over
   English / French / German, trained on words found in one list only; it prints the
   held-out accuracy and the confusion matrix.

    OMP_NUM_THREADS=1 python examples/char_words.py     # one BLAS thread: small products
    python examples/char_words.py --words 20000 --epochs 5 --temperature 0.8 --seed 0
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import mlpx
from mlpx.datasets import WORD_LISTS, Vocabulary, load_word_list, text_windows

LANGUAGES = ("english", "french", "german")


def split_words(words, rng, test_share=0.1):
    order = rng.permutation(len(words))
    n_test = int(len(words) * test_share)
    return [words[i] for i in order[n_test:]], [words[i] for i in order[:n_test]]


def language_model(language, words, known, args, rng):
    train, test = split_words(words, rng)
    vocab = Vocabulary.build(known)  # every character of the language's list
    X, y, _ = text_windows(train, args.window, vocab=vocab)
    Xt, yt, _ = text_windows(test, args.window, vocab=vocab)
    lm = mlpx.LanguageModel(len(vocab), args.window, dim=args.dim, hidden_sizes=[args.hidden],
                            activation="tanh", seed=args.seed)
    t0 = time.perf_counter()
    hist = lm.fit(X, y, epochs=args.epochs, batch_size=128,
                  optimizer={"name": "adam", "lr": 3e-3}, validation_data=(Xt, yt),
                  verbose=0)
    seconds = time.perf_counter() - t0
    start = np.full((args.samples, args.window), vocab.boundary_id, dtype=np.int64)
    drawn = lm.generate(start, 30, temperature=args.temperature, seed=args.seed,
                        stop_id=vocab.boundary_id)
    new = ["".join(vocab.decode(ids)) for ids in drawn]
    print(f"\n{language}: {len(train)} training words ({len(X)} pairs), vocabulary "
          f"{len(vocab)}, {seconds:.1f} s; held-out perplexity "
          f"{hist.history['val_perplexity'][-1]:.2f} per character "
          f"(cross-entropy {hist.history['val_loss'][-1]:.3f} nats)")
    print("  " + ", ".join(w + ("" if w in known else "*") for w in new))


def encode_fixed(words, vocab, length):
    """Ids of each word's first ``length`` characters, right-padded with the boundary."""
    X = np.zeros((len(words), length), dtype=np.int64)
    for i, w in enumerate(words):
        ids = vocab.encode(w[:length])
        X[i, :len(ids)] = ids
    return X


def language_identifier(lists, args, rng):
    counts: dict = {}
    for words in lists.values():
        for w in set(words):
            counts[w] = counts.get(w, 0) + 1
    per_lang = []
    for words in lists.values():
        own = [w for w in words if counts[w] == 1]  # words of one language only
        pick = rng.choice(len(own), size=min(args.words, len(own)), replace=False)
        per_lang.append([own[i] for i in pick])
    vocab = Vocabulary.build([w for ws in per_lang for w in ws])
    X = np.concatenate([encode_fixed(ws, vocab, args.length) for ws in per_lang])
    y = np.concatenate([np.full(len(ws), k) for k, ws in enumerate(per_lang)])
    order = rng.permutation(len(y))
    n_test = len(y) // 5
    test, train = order[:n_test], order[n_test:]
    model = mlpx.Sequential(
        [mlpx.Embedding(len(vocab), args.dim), mlpx.Dense(args.hidden),
         mlpx.ActivationLayer("relu"), mlpx.Dense(len(LANGUAGES))], seed=args.seed)
    t0 = time.perf_counter()
    model.fit(X[train], y[train], epochs=args.epochs, batch_size=128,
              optimizer={"name": "adam", "lr": 3e-3}, verbose=0)
    seconds = time.perf_counter() - t0
    pred = mlpx.to_numpy(model.predict(X[test]))
    acc = float(np.mean(pred == y[test]))
    confusion = np.zeros((3, 3), dtype=np.int64)
    np.add.at(confusion, (y[test], pred), 1)
    print(f"\nLanguage of a word from its first {args.length} characters: {len(train)} "
          f"training words, {n_test} held out, {seconds:.1f} s; held-out accuracy "
          f"{acc:.3f}")
    print("\n| true \\ predicted | " + " | ".join(LANGUAGES) + " |")
    print("|---|" + "---|" * len(LANGUAGES))
    for k, lang in enumerate(LANGUAGES):
        print(f"| {lang} | " + " | ".join(str(v) for v in confusion[k]) + " |")
    return acc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=20000,
                    help="words per language for each model (default 20000)")
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--length", type=int, default=12)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--samples", type=int, default=12, help="words drawn per language")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    missing = [WORD_LISTS[lang][0] for lang in LANGUAGES
               if not os.path.exists(WORD_LISTS[lang][1])]
    if missing:
        print(f"The word lists are missing: apt-get install {' '.join(missing)}",
              file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    lists = {lang: load_word_list(lang) for lang in LANGUAGES}
    print("Word lists: " + ", ".join(f"{lang} {len(ws)}" for lang, ws in lists.items()))
    print(f"Generated words (temperature {args.temperature}, seed {args.seed}; * = not in "
          "the list):")
    for lang, words in lists.items():
        sample = [words[i] for i in rng.choice(len(words), size=min(args.words, len(words)),
                                               replace=False)]
        language_model(lang, sample, set(words), args, rng)
    language_identifier(lists, args, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
