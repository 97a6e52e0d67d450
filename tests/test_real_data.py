"""A small real-data check: the embedded Fashion-MNIST sample, on every backend."""

import numpy as np

from mlpx import MLP, datasets


def test_fashion_mnist_sample_reaches_80_percent(backend):
    (X_train, y_train), (X_test, y_test) = datasets.load_sample()
    X_train, X_test = datasets.scale(X_train), datasets.scale(X_test)
    model = MLP([784, 128, 10], backend=backend, seed=0)
    model.fit(X_train, y_train, epochs=8, batch_size=64,
              optimizer={"name": "adam", "lr": 1e-3}, verbose=0)
    loss, accuracy = model.evaluate(X_test, y_test)
    assert accuracy >= 0.80, accuracy
    assert np.isfinite(loss)
