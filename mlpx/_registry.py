"""One registry helper for activations, losses, initializers, layers, optimizers and
schedules: names and aliases, one name normalisation, one way to build, one error policy.

Name normalisation (:func:`normalize_name`): case is ignored and so are ``-``, ``_`` and
spaces, so ``"Leaky-ReLU"``, ``"leaky_relu"``, ``"LeakyReLU"`` and ``"leaky relu"`` are
the same name, as are ``"Adam-W"`` and ``"adamw"`` or ``"Dense"`` and ``"dense"``.
Registering two classes under names that normalise alike is an error.

:meth:`Registry.build` accepts a name, an instance of the registry's base class (returned
as is) or a config dict ``{"name": ..., **params}`` (what every ``get_config()`` of these
objects returns, so saved models and checkpoints load unchanged). Every error is an
:class:`~mlpx._validation.InvalidParameterError` (a ``ValueError`` and a ``TypeError``):

- an unknown name lists the valid names;
- an unknown parameter lists the valid parameters, a missing one names it;
- parameters given together with an instance are refused;
- a spec of another type, a config dict without ``"name"`` or a non-str name is refused.

A :class:`Registry` is a read-only mapping from every registered spelling (canonical names
and aliases) to the class; lookups with ``[]``, ``in`` and ``.get`` normalise the name.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import Any

from ._validation import InvalidParameterError

__all__ = ["Registry", "normalize_name"]


def normalize_name(name: str) -> str:
    """Return the lookup key of a registry name: lower case without ``-``, ``_``, spaces.

    Examples
    --------
    >>> from mlpx._registry import normalize_name
    >>> normalize_name("Leaky-ReLU") == normalize_name("leaky_relu") == "leakyrelu"
    True
    >>> normalize_name("Adam-W"), normalize_name("Dense")
    ('adamw', 'dense')
    """
    return "".join(ch for ch in name.lower() if ch not in "-_ ")


def _article(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


class Registry(Mapping):
    """Classes of one kind by name, with aliases, one normalisation and one error policy.

    Parameters
    ----------
    kind : str
        What the registry holds, singular, for messages (``"activation"``).
    base : type
        The base class; its instances are returned as is by :meth:`build`.

    Examples
    --------
    >>> from mlpx._registry import Registry
    >>> class Shape:
    ...     def __init__(self, size=1.0):
    ...         self.size = size
    >>> shapes = Registry("shape", Shape)
    >>> _ = shapes.register(Shape, "unit_square", aliases=("square",))
    >>> sorted(shapes), shapes["Unit-Square"] is Shape, "SQUARE" in shapes
    (['square', 'unit_square'], True, True)
    >>> shapes.build({"name": "square", "size": 2.0}).size
    2.0
    """

    def __init__(self, kind: str, base: type):
        self.kind = kind
        self.base = base
        self._classes: dict[str, type] = {}   # spelling as registered -> class
        self._keys: dict[str, str] = {}       # normalised -> spelling as registered
        self._canonical: dict[type, str] = {}  # class -> canonical name

    # ------------------------------------------------------------------ registration
    def register(self, cls: type, name: str, *, aliases: tuple = ()) -> type:
        """Add ``cls`` under its canonical ``name`` and ``aliases``; return ``cls``.

        Raises
        ------
        ValueError
            When a spelling normalises like one already taken by another class.
        """
        for spelling in (name, *aliases):
            key = normalize_name(spelling)
            taken = self._keys.get(key)
            if taken is not None and self._classes[taken] is not cls:
                raise ValueError(f"The {self.kind} name {spelling!r} clashes with "
                                 f"{taken!r} (names ignore case, '-', '_' and spaces).")
            if taken is None:
                self._keys[key] = spelling
                self._classes[spelling] = cls
        self._canonical.setdefault(cls, name)
        return cls

    # ------------------------------------------------------------------ mapping protocol
    def __getitem__(self, name: str) -> type:
        if not isinstance(name, str):
            raise KeyError(name)
        spelling = self._keys.get(normalize_name(name))
        if spelling is None:
            raise KeyError(name)
        return self._classes[spelling]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._classes)})"

    def canonical_name(self, cls: type) -> str:
        """The name ``cls`` was first registered under."""
        return self._canonical[cls]

    # ------------------------------------------------------------------ lookups
    def lookup(self, name: Any) -> type:
        """Return the class registered as ``name`` (normalised).

        Raises
        ------
        InvalidParameterError
            For a non-str name or an unknown one (the message lists the valid names).
        """
        if not isinstance(name, str):
            raise InvalidParameterError(f"{_article(self.kind).capitalize()} name must be "
                                        f"a str. Got {name!r} instead.")
        try:
            return self[name]
        except KeyError:
            raise InvalidParameterError(
                f"Unknown {self.kind} {name!r}. Valid {self.kind}s: {sorted(self)}."
            ) from None

    @staticmethod
    def parameters(cls: type) -> tuple[list[str], list[str], bool]:
        """Return ``(names, required, open)`` of ``cls``'s constructor parameters.

        ``open`` is True when the constructor takes ``**kwargs`` (then unknown names are
        left for it to judge).
        """
        sig = inspect.signature(cls)
        names, required, open_ = [], [], False
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                open_ = True
            elif p.kind is not p.VAR_POSITIONAL:
                names.append(p.name)
                if p.default is p.empty:
                    required.append(p.name)
        return names, required, open_

    def create(self, name: Any, params: dict) -> Any:
        """Instantiate the class registered as ``name`` with ``params`` after checking the
        parameter names against its constructor."""
        cls = self.lookup(name)
        valid, required, open_ = self.parameters(cls)
        canonical = self.canonical_name(cls)
        unknown = sorted(set(params) - set(valid))
        if unknown and not open_:
            raise InvalidParameterError(f"Unknown parameter(s) {unknown} for {self.kind} "
                                        f"{canonical!r}. Valid parameters: {valid}.")
        missing = [p for p in required if p not in params]
        if missing:
            raise InvalidParameterError(f"Missing parameter(s) {missing} for {self.kind} "
                                        f"{canonical!r}. Valid parameters: {valid}.")
        return cls(**params)

    def build(self, spec: Any, **params: Any) -> Any:
        """Return an instance from a name, an instance or a config dict.

        Parameters
        ----------
        spec : str, instance of the base class or dict
            A registered name or alias (normalised), an instance (returned as is) or a
            config dict ``{"name": ..., **params}``.
        **params
            Constructor parameters with a name or a config dict (they override the
            dict's entries).

        Raises
        ------
        InvalidParameterError
            See the module docstring for the policy.
        """
        base = self.base.__name__
        if isinstance(spec, self.base):
            if params:
                raise InvalidParameterError(
                    f"Parameters {sorted(params)} cannot be given with {_article(base)} "
                    f"instance ({spec!r}); pass a name or a config dict instead.")
            return spec
        if isinstance(spec, str):
            return self.create(spec, params)
        if isinstance(spec, dict):
            if "name" not in spec:
                raise InvalidParameterError(
                    f"{_article(self.kind).capitalize()} config dict needs a 'name' key. "
                    f"Got {spec!r} instead.")
            config = dict(spec)
            name = config.pop("name")
            config.update(params)
            return self.create(name, config)
        raise InvalidParameterError(
            f"The {self.kind!r} parameter must be a name, {_article(base)} or a config "
            f"dict. Got {spec!r} of type {type(spec).__name__} instead.")
