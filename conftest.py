"""Root conftest: doctest collection of modules whose optional dependency is missing."""

import importlib.util

collect_ignore = []
for module, path in (("sklearn", "mlpx/sklearn.py"), ("matplotlib", "mlpx/plotting.py"),
                     ("ndonnx", "mlpx/export.py"), ("onnxruntime", "mlpx/export.py")):
    if importlib.util.find_spec(module) is None and path not in collect_ignore:
        collect_ignore.append(path)
