"""The workloads and the implementations timed on them.

Every ``make_*`` function returns a zero-argument callable that performs one unit of
work (one training step, or one forward pass) on data that is already on the device,
and blocks until the device is done (so a timer around it measures the work, not the
queueing). Data is random uniform in [0.01, 1.01): never all-zero, float32 unless told.

Implementations:

``mlpx``           mlpx ``train_step`` (fast path when the model has one)
``mlpx-generic``   the same with every fast path switched off (the Array API path)
``floor``          the bare matrix products one step needs on that backend: forward
                   ``x @ W`` for every layer, backward ``x.T @ dz`` for every layer and
                   ``dz @ W.T`` for every layer but the first (3 per layer minus one),
                   written into preallocated outputs; no bias, activation, loss or update
``torch``          PyTorch eager: ``torch.nn.Sequential`` of ``Linear`` + ``ReLU``,
                   ``CrossEntropyLoss``, ``torch.optim.SGD`` / ``Adam``
                   (``zero_grad(set_to_none=True)``, forward, backward, step)
``sklearn``        scikit-learn's ``MLPClassifier.partial_fit`` on one batch (CPU extra)
``jax-jit``        a hand-written JAX step: ``jax.value_and_grad`` of the same ReLU MLP
                   and softmax cross-entropy, the SGD / Adam update written out, the
                   whole step under one ``jax.jit`` (the reference for mlpx's jitted
                   JAX step)

mlpx on the other Array API libraries (``--backends torch,jax,dask,array_api_strict``,
:func:`make_mlpx_on`): ``mlpx[torch]`` (the PyTorch fast step,
:mod:`mlpx._fast.torch_step`), ``mlpx[jax]`` (the compiled step,
:mod:`mlpx._fast.jax_step`) and ``mlpx-generic[jax]`` (eager), ``mlpx[dask]`` and
``mlpx[array_api_strict]`` (the generic path). Every callable blocks until its step is
computed: JAX on the new parameters, Dask by persisting parameters and optimizer slots.
"""

from __future__ import annotations

import numpy as np

import mlpx
from mlpx import _backend, _fast

#: name -> (layer sizes, optimizer, what is timed)
WORKLOADS = {
    "train_step_sgd": dict(sizes=(784, 512, 512, 10), optimizer="sgd", kind="train"),
    "train_step_adam": dict(sizes=(784, 512, 512, 10), optimizer="adam", kind="train"),
    "inference": dict(sizes=(784, 512, 512, 10), optimizer=None, kind="inference"),
    "deep_wide": dict(sizes=(784, 1024, 1024, 1024, 1024, 10), optimizer="sgd",
                      kind="train"),
}

LR = {"sgd": 0.01, "adam": 1e-3}


def host_data(n, n_in, n_out, *, seed=0, dtype="float32"):
    """Random uniform inputs in [0.01, 1.01) and one-hot targets (host NumPy)."""
    rng = np.random.default_rng(seed)
    X = (rng.random((n, n_in)) + 0.01).astype(dtype)
    labels = rng.integers(0, n_out, n)
    Y = np.zeros((n, n_out), dtype=dtype)
    Y[np.arange(n), labels] = 1.0
    return X, Y, labels


# ---------------------------------------------------------------------------- namespaces
#: ``--backends`` names beyond numpy/cupy -> (importable module, install hint)
OTHER_BACKENDS = {
    "torch": ("array_api_compat.torch", "pip install torch==2.13.0 (the CPU wheel)"),
    "jax": ("jax.numpy", "pip install jax jaxlib"),
    "dask": ("array_api_compat.dask.array", "pip install 'dask[array]'"),
    "array_api_strict": ("array_api_strict", "pip install array-api-strict"),
}


def namespace(name):
    """The Array API namespace module mlpx is given for ``--backends`` name ``name``;
    raises ImportError (with the install line) when the library is missing."""
    import importlib

    module, hint = OTHER_BACKENDS[name]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{name} is not installed ({exc}); {hint}") from exc


def torch_namespace():
    return namespace("torch")


def mlpx_model(xp, sizes, n, *, optimizer="sgd", seed=0):
    """A compiled float32 ReLU MLP on namespace ``xp`` and one batch on its device."""
    b = _backend.resolve_backend(xp)
    model = mlpx.MLP(list(sizes), activation="relu", backend=b, seed=seed)
    model.compile(optimizer, lr=LR[optimizer])
    X, Y, _ = host_data(n, sizes[0], sizes[-1], seed=seed + 1)
    return model, _backend.to_device(X, backend=b), _backend.to_device(Y, backend=b)


def make_mlpx_on(xp, sizes, n, *, optimizer="sgd", fast=True, seed=0):
    """One ``model.train_step`` on any Array API namespace ``xp``, computed before it
    returns (JAX: blocks on the new parameters; Dask: persists the training state)."""
    model, Xd, Yd = mlpx_model(xp, sizes, n, optimizer=optimizer, seed=seed)
    name = getattr(xp, "__name__", "")
    finish = None
    if name.startswith("jax"):
        import jax

        def finish():
            jax.block_until_ready(model.params)
    elif "dask" in name:
        import dask

        def finish():
            state = model.optimizer_state_
            names = list(state["slots"])
            arrays = list(model.params) + [a for s in names for a in state["slots"][s]]
            done = list(dask.persist(*arrays))
            n_p = len(model.params)
            model.assign_params(done[:n_p])
            for i, s in enumerate(names, start=1):
                state["slots"][s][:] = done[i * n_p:(i + 1) * n_p]

    def run():
        if fast:
            model.train_step(Xd, Yd)
        else:
            with _fast.disabled():
                model.train_step(Xd, Yd)
        if finish is not None:
            finish()
    run.model = model
    return run


# ---------------------------------------------------------------------------- mlpx
def make_mlpx(backend, sizes, n, *, optimizer="sgd", kind="train", fast=True, seed=0):
    """One mlpx training step (or forward pass) on ``backend`` for batch size ``n``."""
    b = _backend.resolve_backend(backend)
    model = mlpx.MLP(list(sizes), activation="relu", backend=b, seed=seed)
    X, Y, _ = host_data(n, sizes[0], sizes[-1], seed=seed + 1)
    Xd = _backend.to_device(X, backend=b)
    Yd = _backend.to_device(Y, backend=b)

    def sync():
        return _backend.synchronize(b)

    if kind == "inference":
        def run():
            model._forward(Xd, training=False)
            sync()
        return run
    model.compile(optimizer, lr=LR[optimizer])
    if fast:
        def run():
            model.train_step(Xd, Yd)
            sync()
    else:
        def run():
            with _fast.disabled():
                model.train_step(Xd, Yd)
            sync()
    run.model = model
    return run


def make_floor(backend, sizes, n, *, kind="train", seed=0):
    """The matrix products alone (preallocated outputs) on ``backend``'s namespace."""
    b = _backend.resolve_backend(backend)
    xp = b.xp
    rng = np.random.default_rng(seed)
    dev = lambda a: _backend.to_device(a.astype(np.float32), backend=b)  # noqa: E731
    acts = [dev(rng.random((n, sizes[0])) + 0.01)]
    acts += [dev(np.zeros((n, w))) for w in sizes[1:]]
    Ws = [dev(rng.random((i, o)) * 0.01 + 0.001) for i, o in zip(sizes[:-1], sizes[1:])]
    dz = [dev(rng.random((n, o)) + 0.01) for o in sizes[1:]]
    dW = [dev(np.zeros((i, o))) for i, o in zip(sizes[:-1], sizes[1:])]
    dx = [None] + [dev(np.zeros((n, w))) for w in sizes[1:-1]]
    L = len(Ws)
    mm = None
    if _backend.is_numpy_namespace(xp):
        mm = np.matmul
    elif _backend.is_cupy_namespace(xp):  # pragma: no cover - GPU only
        import cupy

        mm = cupy.matmul  # takes out= like NumPy's
    on_gpu = b.name == "cupy"

    def run():
        if mm is not None:  # products into the preallocated outputs
            for i in range(L):
                mm(acts[i], Ws[i], out=acts[i + 1])
            if kind == "train":
                for i in range(L - 1, -1, -1):
                    mm(acts[i].T, dz[i], out=dW[i])
                    if i:
                        mm(dz[i], Ws[i].T, out=dx[i])
        else:  # any other namespace: the Array API has no out=
            for i in range(L):
                acts[i + 1] = acts[i] @ Ws[i]
            if kind == "train":
                for i in range(L - 1, -1, -1):
                    dW[i] = acts[i].T @ dz[i]
                    if i:
                        dx[i] = dz[i] @ Ws[i].T
        if on_gpu:
            _backend.synchronize(b)
    return run


# ---------------------------------------------------------------------------- torch
def torch_devices():
    """The torch devices available here ("cpu", and "cuda" when a GPU answers)."""
    try:
        import torch
    except ImportError:
        return []
    devs = ["cpu"]
    if torch.cuda.is_available():  # pragma: no cover - GPU only
        devs.append("cuda")
    return devs


def make_torch(device, sizes, n, *, optimizer="sgd", kind="train", seed=0):
    """PyTorch eager on the same workload (ReLU MLP, cross-entropy, SGD/Adam)."""
    import torch

    torch.manual_seed(seed)
    layers = []
    for i, (a, c) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, c))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).to(device)
    X, _, labels = host_data(n, sizes[0], sizes[-1], seed=seed + 1)
    Xd = torch.from_numpy(X).to(device)
    yd = torch.from_numpy(labels).to(device)
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if kind == "inference":
        def run():
            with torch.no_grad():
                net(Xd)
            sync()
        return run
    loss_fn = torch.nn.CrossEntropyLoss()
    if optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=LR["sgd"])
    else:
        opt = torch.optim.Adam(net.parameters(), lr=LR["adam"])

    def run():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(Xd), yd)
        loss.backward()
        opt.step()
        sync()
    return run


# ---------------------------------------------------------------------------- sklearn
def make_sklearn(sizes, n, *, optimizer="sgd", kind="train", seed=0):
    """scikit-learn's MLPClassifier: one ``partial_fit`` on a batch (or ``predict``)."""
    import warnings

    from sklearn.neural_network import MLPClassifier

    X, _, labels = host_data(n, sizes[0], sizes[-1], seed=seed + 1)
    solver = "sgd" if optimizer in ("sgd", None) else "adam"
    clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), activation="relu",
                        solver=solver, learning_rate_init=LR.get(optimizer or "sgd"),
                        momentum=0.0, alpha=0.0, batch_size=n, random_state=seed)
    classes = np.arange(sizes[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X, labels, classes=classes)
    if kind == "inference":
        return lambda: clf.predict_proba(X)

    def run():
        clf.partial_fit(X, labels)
    return run


# ---------------------------------------------------------------------------- jax
def make_jax_jit(sizes, n, *, optimizer="sgd", seed=0):
    """A hand-written JAX training step (the same ReLU MLP, softmax cross-entropy and
    SGD / Adam as the others), one ``jax.jit`` over the whole step."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    params = []
    for a, c in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6.0 / a)
        params.append((jnp.asarray(rng.uniform(-limit, limit, (a, c)).astype(np.float32)),
                       jnp.zeros((c,), dtype=jnp.float32)))
    X, Y, _ = host_data(n, sizes[0], sizes[-1], seed=seed + 1)
    Xd, Yd = jnp.asarray(X), jnp.asarray(Y)
    lr = LR[optimizer]

    def loss_fn(ps, x, y):
        for W, b in ps[:-1]:
            x = jax.nn.relu(x @ W + b)
        W, b = ps[-1]
        z = x @ W + b
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.sum(y * z, axis=1))

    if optimizer == "sgd":
        @jax.jit
        def step(ps, opt_state, x, y):
            loss, g = jax.value_and_grad(loss_fn)(ps, x, y)
            return jax.tree_util.tree_map(lambda p, d: p - lr * d, ps, g), opt_state, loss

        opt_state = None
    else:
        b1, b2, eps = 0.9, 0.999, 1e-8

        @jax.jit
        def step(ps, opt_state, x, y):
            m, v, t = opt_state
            loss, g = jax.value_and_grad(loss_fn)(ps, x, y)
            t = t + 1
            m = jax.tree_util.tree_map(lambda a, d: b1 * a + (1 - b1) * d, m, g)
            v = jax.tree_util.tree_map(lambda a, d: b2 * a + (1 - b2) * d * d, v, g)
            size = lr / (1 - b1 ** t)
            c2 = jnp.sqrt(1 - b2 ** t)
            ps = jax.tree_util.tree_map(
                lambda p, a, s: p - size * (a / (jnp.sqrt(s) / c2 + eps)), ps, m, v)
            return ps, (m, v, t), loss

        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        opt_state = (zeros, zeros, jnp.zeros((), dtype=jnp.float32))
    state = {"params": params, "opt": opt_state}

    def run():
        ps, opt, _ = step(state["params"], state["opt"], Xd, Yd)
        jax.block_until_ready(ps)
        state["params"], state["opt"] = ps, opt
    return run
