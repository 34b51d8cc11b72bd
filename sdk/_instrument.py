"""`instrument()` / `uninstrument()`: patch the provider SDKs, now or when they are imported.

Patching is idempotent (twice is once) and reversible (`uninstrument()` puts the originals back).
A provider SDK the application has not imported is never imported by unitcost: a post-import hook
patches it when the application imports it.
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any

from ._errors import internal_error

# provider module name -> adapter module (imported lazily, so `import unitcost` stays light).
# An adapter module exposes PATCHES: (module, "Class.method", wrapt wrapper) for each method.
_ADAPTERS = {"openai": "unitcost.providers.openai"}

_lock = threading.RLock()
_wanted = False
_hooks_registered: set[str] = set()
_originals: dict[tuple[Any, str], Any] = {}  # (class, attribute) -> original function


def instrument() -> None:
    """Record every LLM call made through the provider SDKs unitcost knows (openai)."""
    global _wanted
    with _lock:
        _wanted = True
        for module_name in _ADAPTERS:
            if module_name in sys.modules:
                _patch(module_name)
            elif module_name not in _hooks_registered:
                import wrapt  # imported here: wrapt pulls in asyncio, too slow for `import unitcost`

                _hooks_registered.add(module_name)
                wrapt.register_post_import_hook(_on_import, module_name)


def uninstrument() -> None:
    """Put the original SDK methods back. Calls made afterwards are not recorded."""
    global _wanted
    with _lock:
        _wanted = False
        for (owner, attribute), original in list(_originals.items()):
            setattr(owner, attribute, original)
        _originals.clear()


def is_instrumented() -> bool:
    return bool(_originals)


def _on_import(module: Any) -> None:
    with _lock:
        if _wanted:
            _patch(module.__name__)


def _patch(module_name: str) -> None:
    import wrapt

    try:
        adapter = importlib.import_module(_ADAPTERS[module_name])
        for target_module, path, wrapper in adapter.PATCHES:
            module = importlib.import_module(target_module)
            class_name, attribute = path.split(".")
            owner = getattr(module, class_name)
            if (owner, attribute) in _originals:
                continue  # already patched: instrument() is idempotent
            original = owner.__dict__[attribute]
            _originals[(owner, attribute)] = original
            setattr(owner, attribute, wrapt.FunctionWrapper(original, wrapper))
    except Exception as exc:  # noqa: BLE001 - an SDK we cannot patch must not break the import
        internal_error(f"instrumenting {module_name}", exc)
