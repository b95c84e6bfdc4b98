"""One module per method: its light ``Options`` dataclass and a ``register`` call naming its
implementation (ferret/algorithms/registry.py), which is imported only when the method runs.

Adding a method is one new module here (or in a ``ferret/methods/`` folder of another entry of
the Python path: the package's path is extended to every such folder): it appears in
``ferret show-config``, in ``methods: all`` grids and in the reports without another edit.
Keep its heavy imports (torch, peft) out of the module's top, or in the implementation's own
module, so that validating a grid stays light.
"""

import sys
from pathlib import Path


def _folders_on_path(own: list[str]) -> list[str]:
    """``own`` and every other existing ``<entry>/ferret/methods`` folder of ``sys.path``, once each
    (what pkgutil.extend_path does for a top-level package)."""
    seen = {Path(p).resolve() for p in own}
    found = list(own)
    for entry in sys.path:
        folder = Path(entry or ".") / "ferret" / "methods"
        if folder.is_dir() and folder.resolve() not in seen:
            seen.add(folder.resolve())
            found.append(str(folder))
    return found


__path__ = _folders_on_path(__path__)
