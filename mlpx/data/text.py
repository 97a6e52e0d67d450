"""Text as token ids for a language model: vocabularies, (window -> next token) pairs and
the word lists that Debian ships.

A sequence (a word spelled as characters, or a sentence as words) becomes training
pairs by padding it with a boundary token: ``window`` of them on the left, so that the
first token is predicted from "start of sequence", and one on the right, which the model
learns to predict as "end of sequence". The boundary has id 0 in every
:class:`Vocabulary`.

Example (characters, ``window=3``, boundary ``<s>``): ``"cat"`` gives
``(<s> <s> <s>) -> c``, ``(<s> <s> c) -> a``, ``(<s> c a) -> t``, ``(c a t) -> <s>``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from .._files import open_regular

__all__ = [
    "Vocabulary",
    "tokenize",
    "make_windows",
    "text_windows",
    "load_word_list",
    "WORD_LISTS",
]

#: The Debian word lists by language: (package, file). ``apt-get install wamerican
#: wfrench wngerman`` installs them.
WORD_LISTS = {
    "english": ("wamerican", "/usr/share/dict/american-english"),
    "french": ("wfrench", "/usr/share/dict/french"),
    "german": ("wngerman", "/usr/share/dict/ngerman"),
}

_LEVELS = ("char", "word")
_WORD = re.compile(r"\w+|[^\w\s]")
_MAX_WORD_LIST_BYTES = 64 << 20


def tokenize(text: str, level: str = "char") -> list[str]:
    """Split ``text`` into characters or words.

    Parameters
    ----------
    text : str
    level : {"char", "word"}, default="char"
        ``"word"`` keeps runs of letters and digits as words and every other
        non-space character as a token of its own.

    Examples
    --------
    >>> from mlpx.datasets import tokenize
    >>> tokenize("le chat", "char")[:4], tokenize("The cat, sat.", "word")
    (['l', 'e', ' ', 'c'], ['The', 'cat', ',', 'sat', '.'])
    """
    if not isinstance(text, str):
        raise TypeError(f"The 'text' parameter of tokenize must be a str. Got "
                        f"{type(text).__name__} instead.")
    _check_level(level, "tokenize")
    return list(text) if level == "char" else _WORD.findall(text)


class Vocabulary:
    """A bijection between tokens and ids; id 0 is the boundary token.

    Parameters
    ----------
    tokens : sequence of str
        The tokens in id order, *without* the boundary (it is prepended) and without the
        unknown token (appended after the boundary when ``unknown`` is given).
    boundary : str, default="<s>"
        The start / end-of-sequence token (id 0).
    unknown : str or None, default=None
        A token that stands for every token not in the vocabulary (id 1); None makes
        :meth:`encode` refuse unknown tokens.

    Attributes
    ----------
    tokens : list of str
        Every token, by id.

    Examples
    --------
    >>> from mlpx.datasets import Vocabulary
    >>> v = Vocabulary.build(["cat", "act"])
    >>> v.tokens, len(v)
    (['<s>', 'a', 'c', 't'], 4)
    >>> v.encode("tac").tolist(), "".join(v.decode([3, 1, 2]))
    ([3, 1, 2], 'tac')
    """

    __module__ = "mlpx.datasets"

    def __init__(self, tokens: Sequence[str], *, boundary: str = "<s>",
                 unknown: str | None = None):
        specials = [boundary] + ([] if unknown is None else [unknown])
        tokens = list(tokens)
        for t in specials + tokens:
            if not isinstance(t, str):
                raise TypeError(f"Vocabulary tokens must be str. Got {t!r} instead.")
        self.tokens = specials + tokens
        self.boundary = boundary
        self.unknown = unknown
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self._ids) != len(self.tokens):
            dup = sorted(t for t, n in Counter(self.tokens).items() if n > 1)
            raise ValueError(f"Vocabulary tokens must be distinct (the boundary and unknown "
                             f"tokens included). Got duplicates {dup[:5]} instead.")

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], *, min_count: int = 1,
              max_size: int | None = None, boundary: str = "<s>",
              unknown: str | None = None) -> Vocabulary:
        """The vocabulary of ``sequences``: its tokens in sorted order (so the same data
        give the same ids); with ``max_size``, the most frequent ones (ties by text).

        Parameters
        ----------
        sequences : iterable of iterables of str
            Words (iterated as characters) or lists of tokens.
        min_count : int >= 1, default=1
            Rarer tokens are left out (they need ``unknown`` to be encoded).
        max_size : int or None, default=None
            Keep at most this many tokens (besides the special ones).
        boundary, unknown
            As for the constructor.
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"The 'min_count' parameter of Vocabulary.build must be an int "
                             f">= 1. Got {min_count!r} instead.")
        if max_size is not None and (isinstance(max_size, bool) or
                                     not isinstance(max_size, int) or max_size < 1):
            raise ValueError(f"The 'max_size' parameter of Vocabulary.build must be an int "
                             f">= 1 or None. Got {max_size!r} instead.")
        counts: Counter = Counter()
        for seq in sequences:
            counts.update(seq)
        counts.pop(boundary, None)
        if unknown is not None:
            counts.pop(unknown, None)
        kept = sorted((t for t, n in counts.items() if n >= min_count),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max_size]
        kept.sort()
        return cls(kept, boundary=boundary, unknown=unknown)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, boundary={self.boundary!r})"

    @property
    def boundary_id(self) -> int:
        """The id of the boundary token (always 0)."""
        return 0

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Token ids (int64 array of shape (n_tokens,)) of ``tokens``.

        Raises
        ------
        ValueError
            For a token not in the vocabulary when there is no ``unknown`` token.
        """
        unk = None if self.unknown is None else self._ids[self.unknown]
        out = []
        for t in tokens:
            i = self._ids.get(t, unk)
            if i is None:
                raise ValueError(f"The token {t!r} is not in the vocabulary ({len(self)} "
                                 "tokens); build it with unknown='<unk>' to map unseen "
                                 "tokens to one id.")
            out.append(i)
        return np.asarray(out, dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The tokens of ``ids`` (a ValueError for an id outside ``[0, len(self))``)."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"Token id {i} is outside [0, {len(self.tokens)}).")
            out.append(self.tokens[i])
        return out


def make_windows(sequences: Iterable[Sequence[int] | np.ndarray], window: int, *,
                 boundary_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(window -> next token) training pairs from sequences of token ids.

    Each non-empty sequence is padded with ``window`` boundary ids on the left and one
    on the right; every token of the sequence and the closing boundary is a target.

    Parameters
    ----------
    sequences : iterable of sequences of int
        Token ids (e.g. :meth:`Vocabulary.encode` of each word); they must not contain
        ``boundary_id``.
    window : int >= 1
        Tokens of context.
    boundary_id : int, default=0

    Returns
    -------
    X : int64 array of shape (n_pairs, window)
    y : int64 array of shape (n_pairs,)
        ``n_pairs`` is the total length of the sequences plus one per sequence.

    Examples
    --------
    >>> from mlpx.datasets import make_windows
    >>> X, y = make_windows([[5, 6]], 2)
    >>> X.tolist(), y.tolist()
    ([[0, 0], [0, 5], [5, 6]], [5, 6, 0])
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"The 'window' parameter of make_windows must be an int >= 1. Got "
                         f"{window!r} instead.")
    pad = np.full(window, boundary_id, dtype=np.int64)
    parts = []
    for seq in sequences:
        s = np.asarray(seq, dtype=np.int64).reshape(-1)
        if s.size == 0:
            continue
        if np.any(s == boundary_id):
            raise ValueError(f"A sequence holds the boundary id {boundary_id}; it may only "
                             "mark the start and end of sequences.")
        parts += [pad, s]
    if not parts:
        return np.zeros((0, window), dtype=np.int64), np.zeros(0, dtype=np.int64)
    parts.append(pad[:1])
    stream = np.concatenate(parts)
    p = np.arange(window, stream.size)
    target = (stream[p] != boundary_id) | (stream[p - 1] != boundary_id)
    p = p[target]
    X = np.lib.stride_tricks.sliding_window_view(stream, window)[p - window]
    return np.ascontiguousarray(X), stream[p]


def text_windows(texts: Iterable[str], window: int, *, level: str = "char",
                 vocab: Vocabulary | None = None, **build) -> tuple[np.ndarray, np.ndarray,
                                                                   Vocabulary]:
    """Tokenize ``texts``, build (or use) a vocabulary and make the training pairs.

    Parameters
    ----------
    texts : iterable of str
        Words (``level="char"``), or sentences / documents (either level); each is one
        sequence.
    window : int >= 1
    level : {"char", "word"}, default="char"
    vocab : Vocabulary or None, default=None
        None builds one from ``texts`` (with ``**build`` passed to
        :meth:`Vocabulary.build`); give the training set's vocabulary for held-out text.

    Returns
    -------
    X, y, vocab
        As :func:`make_windows` returns them, and the vocabulary.

    Examples
    --------
    >>> from mlpx.datasets import text_windows
    >>> X, y, vocab = text_windows(["cat", "act"], 2)
    >>> X.shape, "".join(vocab.decode(y[:4]))
    ((8, 2), 'cat<s>')
    """
    _check_level(level, "text_windows")
    seqs = [tokenize(t, level) for t in texts]
    if vocab is None:
        vocab = Vocabulary.build(seqs, **build)
    X, y = make_windows([vocab.encode(s) for s in seqs], window,
                        boundary_id=vocab.boundary_id)
    return X, y, vocab


def load_word_list(language: str = "english", *, path: str | os.PathLike | None = None,
                   lowercase: bool = True, letters_only: bool = True) -> list[str]:
    """The words of a Debian word list (``wamerican``, ``wfrench``, ``wngerman``).

    Parameters
    ----------
    language : {"english", "french", "german"}, default="english"
        Which list (see :data:`WORD_LISTS`); ignored when ``path`` is given.
    path : str or os.PathLike, optional
        Another list: a UTF-8 text file with one word per line (at most 64 MiB).
    lowercase : bool, default=True
        Lower-case every word (then duplicates such as ``Bill``/``bill`` are merged).
    letters_only : bool, default=True
        Keep only words made of letters (no ``'s`` possessives, digits or hyphens).

    Returns
    -------
    list of str
        Distinct words in file order.

    Raises
    ------
    FileNotFoundError
        When the list is not installed; the message names the Debian package.
    """
    if path is None:
        if language not in WORD_LISTS:
            raise ValueError(f"The 'language' parameter of load_word_list must be one of "
                             f"{sorted(WORD_LISTS)}. Got {language!r} instead.")
        package, path = WORD_LISTS[language]
        if not os.path.exists(path):
            raise FileNotFoundError(f"The {language} word list {path} is not installed; "
                                    f"install Debian's {package} package (apt-get install "
                                    f"{package}) or pass path=.")
    with open_regular(os.fspath(path)) as f:
        data = f.read(_MAX_WORD_LIST_BYTES + 1)
    if len(data) > _MAX_WORD_LIST_BYTES:
        raise ValueError(f"The word list {path} is larger than 64 MiB; this is not a word "
                         "list.")
    words: dict[str, None] = {}
    for line in data.decode("utf-8").splitlines():
        w = line.strip()
        if lowercase:
            w = w.lower()
        if w and (not letters_only or w.isalpha()):
            words[w] = None
    return list(words)


def _check_level(level, owner):
    if level not in _LEVELS:
        raise ValueError(f"The 'level' parameter of {owner} must be one of {list(_LEVELS)}. "
                         f"Got {level!r} instead.")
