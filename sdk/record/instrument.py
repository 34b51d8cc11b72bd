"""`instrument()` / `uninstrument()`: patch the provider SDKs, now or when they are imported.

``instrument()`` records every call made through the SDKs unitcost knows; ``instrument(client)``
records only that client's calls (and, for the ``openai`` and ``anthropic`` SDKs, the calls of its
resources such as ``client.chat.completions``). Both may be on at once: a call is recorded once.

An adapter module exposes ``PATCHES``: ``(module, "Class.method", wrapt wrapper)`` for each method.
Each class is patched once, with the wrapper behind a gate that passes the call straight through
when neither the global switch nor the call's client is on, and when the call is made from inside
another wrapped method (a ``.stream()`` helper calling ``create``): one call, one span. A wrapper
marked `observer` (one that only looks, such as the retry counter) runs whenever anything is on; one
marked `ungated` (anthropic 0.x's isinstance check that sees through unitcost's stream proxies)
runs whenever it is patched in. An entry whose module, class or method this SDK version lacks is
skipped, so an adapter may list a method under each module path it has had.

Patching is idempotent (twice is once) and reversible (`uninstrument()` puts the originals back).
A provider SDK the application has not imported is never imported by unitcost: a post-import hook
patches it when the application imports it.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ..common.errors import internal_error, logger
from ..common.forks import after_fork_in_child

__all__ = ["OFF_ENV", "instrument", "is_instrumented", "observer", "ungated", "uninstrument"]

# provider module name -> adapter module (imported lazily, so `import unitcost` stays light).
_ADAPTERS = {
    "openai": "unitcost.providers.openai",
    "anthropic": "unitcost.providers.anthropic",
    "google.genai": "unitcost.providers.google_genai",
    "botocore": "unitcost.providers.bedrock",
}
# The SDKs whose calls can be recorded client by client: the object each wrapper sees is the client
# or keeps it in ``_client`` (botocore's ``_make_api_call`` runs on the client itself).
_PER_CLIENT = ("openai", "anthropic", "botocore")
# instrument()'s switch -> (the framework's module, unitcost's hook module with install/uninstall).
_FRAMEWORKS = {
    "agents": ("agents", "unitcost.frameworks.openai_agents"),
    "langchain": ("langchain_core", "unitcost.frameworks.langchain"),
    "litellm": ("litellm", "unitcost.frameworks.litellm"),
}
# Switches turned off for the process: UNITCOST_INSTRUMENT_OFF="agents,litellm" (for programs started
# by `opentelemetry-instrument`, whose instrument() call takes no arguments).
OFF_ENV = "UNITCOST_INSTRUMENT_OFF"

_lock = threading.RLock()


def _new_lock_after_fork() -> None:
    # A child of fork gets this lock as it was: possibly held by a thread the child does not have.
    global _lock
    _lock = threading.RLock()


after_fork_in_child(_new_lock_after_fork)
_wanted = False  # the global switch
_clients: weakref.WeakSet[Any] = weakref.WeakSet()  # clients instrumented one by one
_hooks_registered: set[str] = set()
_originals: dict[tuple[Any, str], Any] = {}  # (class, attribute) -> original function
_frameworks_on: set[str] = set()  # instrument()'s framework switches that are on


def observer(wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a PATCHES wrapper that only observes (it records no call of its own)."""
    wrapper.__unitcost_observer__ = True  # type: ignore[attr-defined]
    return wrapper


def ungated(wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a PATCHES wrapper that runs whenever it is patched in, whichever client is instrumented:
    one that only changes what the SDK answers about unitcost's own objects (its proxies)."""
    wrapper.__unitcost_ungated__ = True  # type: ignore[attr-defined]
    return wrapper


def instrument(client: Any = None, *, agents: bool = True, langchain: bool = True, litellm: bool = True) -> None:
    """Record LLM calls made through the provider SDKs unitcost knows (openai, anthropic,
    google-genai, and Amazon Bedrock through boto3), and the steps and calls of the agent
    frameworks it knows.

    Without an argument, every call of every client, plus: the OpenAI Agents SDK's agent runs,
    tools, handoffs and guardrails as steps and tools (``agents``), LangChain/LangGraph's chains,
    graph nodes and tools (``langchain``), and LiteLLM's calls (``litellm``); each is hooked when
    the application imports it, and each switch turns its framework off (so does
    ``UNITCOST_INSTRUMENT_OFF=agents,langchain,litellm``). With a client
    (``unitcost.instrument(client)``: an openai, anthropic or boto3 ``bedrock-runtime`` client),
    only the calls made through that client object (not through copies made by ``with_options``),
    and no framework.

    Example::

        unitcost.instrument(litellm=False)   # everything but LiteLLM

        client = OpenAI()
        unitcost.instrument(client)
    """
    global _wanted
    from . import threads as _threads  # here: concurrent.futures is not needed by `import unitcost`

    with _lock:
        _threads.patch()  # executor work stays in the submitter's task (see unitcost.record.threads)
        if client is None:
            _wanted = True
            for module_name in _ADAPTERS:
                if module_name in sys.modules:
                    _patch(module_name)
                elif module_name not in _hooks_registered:
                    import wrapt  # imported here: wrapt pulls in asyncio, too slow for `import unitcost`

                    _hooks_registered.add(module_name)
                    wrapt.register_post_import_hook(_on_import, module_name)
            _switch_frameworks({"agents": agents, "langchain": langchain, "litellm": litellm})
            return
        module_name = type(client).__module__.split(".")[0]
        if module_name not in _PER_CLIENT:
            internal_error("instrument(client)", TypeError(
                f"unitcost.instrument(client) takes an openai, anthropic or boto3 client, not {type(client).__name__};"
                " unitcost.instrument() records every SDK unitcost knows"
            ))
            return
        _clients.add(client)
        _patch(module_name)


def uninstrument(client: Any = None) -> None:
    """Stop recording. Without an argument: every client, and the original SDK methods are put back.
    With a client: that client only (the global switch, if on, still records it)."""
    global _wanted
    with _lock:
        if client is not None:
            _clients.discard(client)
            if _wanted or len(_clients):
                return
        _wanted = False
        _clients.clear()
        _switch_frameworks(dict.fromkeys(_FRAMEWORKS, False))
        if "unitcost.record.threads" in sys.modules:
            sys.modules["unitcost.record.threads"].unpatch()
        for (owner, attribute), original in list(_originals.items()):
            setattr(owner, attribute, original)
        _originals.clear()


def is_instrumented() -> bool:
    return bool(_originals)


def _enabled(instance: Any) -> bool:
    if _wanted:
        return True
    if not len(_clients):
        return False
    try:
        # A resource (client.chat.completions) keeps its client in `_client`; a client is itself.
        return instance in _clients or getattr(instance, "_client", None) in _clients
    except TypeError:
        return False


def _gated(wrapper: Callable[..., Any]) -> Callable[..., Any]:
    from .llm import in_wrapped_call  # here: llm imports wrapt, too slow for `import unitcost` (start-up time)

    if getattr(wrapper, "__unitcost_ungated__", False):
        return wrapper
    if getattr(wrapper, "__unitcost_observer__", False):

        def observe(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if not (_wanted or _enabled(instance)):
                return wrapped(*args, **kwargs)
            return wrapper(wrapped, instance, args, kwargs)

        return observe

    def gate(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if in_wrapped_call() or not (_wanted or _enabled(instance)):
            return wrapped(*args, **kwargs)
        return wrapper(wrapped, instance, args, kwargs)

    return gate


def _on_import(module: Any) -> None:
    with _lock:
        if _wanted:
            _patch(module.__name__)


def _switch_frameworks(wanted: dict[str, bool]) -> None:
    """Hook each framework switched on (now if imported, else when it is), unhook each switched off."""
    off = {word.strip() for word in os.environ.get(OFF_ENV, "").split(",")}
    for switch, on in wanted.items():
        module_name, hook_module = _FRAMEWORKS[switch]
        if on and switch not in off:
            _frameworks_on.add(switch)
            if module_name in sys.modules:
                _hook_framework(switch, "install")
            elif module_name not in _hooks_registered:
                import wrapt  # start-up time, as above

                _hooks_registered.add(module_name)
                wrapt.register_post_import_hook(_on_framework_import, module_name)
        elif switch in _frameworks_on:
            _frameworks_on.discard(switch)
            _hook_framework(switch, "uninstall")


def _on_framework_import(module: Any) -> None:
    with _lock:
        for switch, (module_name, _hook) in _FRAMEWORKS.items():
            if module_name == module.__name__ and switch in _frameworks_on:
                _hook_framework(switch, "install")


def _hook_framework(switch: str, action: str) -> None:
    try:
        getattr(importlib.import_module(_FRAMEWORKS[switch][1]), action)()
    except Exception as exc:  # noqa: BLE001 - a framework we cannot hook must not break the program
        internal_error(f"{action} {switch}", exc)


def _patch(module_name: str) -> None:
    import wrapt  # start-up time, as above

    try:
        adapter = importlib.import_module(_ADAPTERS[module_name])
    except ModuleNotFoundError as exc:
        if exc.name == _ADAPTERS[module_name]:
            return  # no adapter for this SDK in this version of unitcost
        internal_error(f"instrumenting {module_name}", exc)
        return
    except Exception as exc:  # noqa: BLE001 - an SDK we cannot patch must not break the import
        internal_error(f"instrumenting {module_name}", exc)
        return
    # Each method on its own: one that this SDK version lacks must not leave the others unpatched.
    for target_module, path, wrapper in adapter.PATCHES:
        try:
            class_name, attribute = path.split(".")
            try:
                owner = getattr(importlib.import_module(target_module), class_name)
                original = owner.__dict__[attribute]
            except (ImportError, AttributeError, KeyError):
                logger.debug("unitcost: %s has no %s.%s in this version; not patched", module_name, target_module, path)
                continue
            if (owner, attribute) in _originals:
                continue  # already patched: instrument() is idempotent
            _originals[(owner, attribute)] = original
            setattr(owner, attribute, wrapt.FunctionWrapper(original, _gated(wrapper)))
        except Exception as exc:  # noqa: BLE001
            internal_error(f"instrumenting {module_name} {path}", exc)
