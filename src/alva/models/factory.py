"""Models built by the user's own code: ``FILE.py:FUNCTION`` or ``package.module:FUNCTION``.

Loading such a model imports that file or module and calls the function, so it trusts that code exactly as
running it would. Weights come separately, as a plain state dict in safetensors (never unpickled).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import sysconfig
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

_SPEC = re.compile(r"^(?P<module>.+):(?P<function>[A-Za-z_]\w*)$")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class ModelLoadError(ValueError):
    """A model spec, card or weights file that alva cannot turn into a model; the message names it."""


def is_factory_spec(text: str) -> bool:
    """Whether ``text`` reads ``FILE.py:FUNCTION`` or ``package.module:FUNCTION``."""
    match = _SPEC.match(text)
    return match is not None and (match["module"].endswith(".py") or bool(_DOTTED.match(match["module"])))


def canonical_reference(spec: str) -> str:
    """``spec`` as a card records it: a file's absolute path, or the module path unchanged."""
    module, function = _split(spec)
    return f"{Path(module).resolve()}:{function}" if module.endswith(".py") else spec


def import_factory(spec: str, *, from_card: bool = False) -> Callable[..., nn.Module]:
    """The function ``spec`` names, its file or module imported (once per process).

    Args:
        spec: ``FILE.py:FUNCTION`` or ``package.module:FUNCTION``.
        from_card: Whether the spec was read from a card rather than given by the user: then it may not name
            the standard library nor a function that is not written in Python.

    Raises:
        FileNotFoundError: The file does not exist.
        ModelLoadError: The module does not import or has no such function.
    """
    module_name, function = _split(spec)
    if from_card:
        _refuse_system_code(spec, module_name)
    if module_name.endswith(".py"):
        module = _import_file(spec, Path(module_name))
    else:
        module = _import_module(spec, module_name)
    factory = getattr(module, function, None)
    if factory is None or not callable(factory):
        names = [n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n])]
        close = difflib.get_close_matches(function, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"model {spec!r}: {module_name} has no function {function!r}{hint}")
    if from_card and not (inspect.isfunction(factory) or inspect.isclass(factory)):
        raise ModelLoadError(f"model {spec!r}: a card's factory must be a Python function or class")
    return factory


def call_factory(spec: str, kwargs: Mapping[str, object] | None = None, *, from_card: bool = False) -> nn.Module:
    """The ``nn.Module`` that ``spec``'s function returns when called with ``kwargs``.

    Raises:
        FileNotFoundError: The file does not exist.
        ModelLoadError: The function cannot be imported, raises, or returns something else than an ``nn.Module``.
    """
    factory = import_factory(spec, from_card=from_card)
    kwargs = dict(kwargs or {})
    try:
        model = factory(**kwargs)
    except Exception as err:
        raise ModelLoadError(f"model {spec!r}: calling it with {kwargs or 'no arguments'} raised "
                             f"{type(err).__name__}: {err}") from err
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"model {spec!r} returned a {type(model).__name__}; expected a torch.nn.Module")
    return model


def load_state(module: nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a plain state dict into ``module``, dropping the ``module.`` prefix that ``DataParallel`` adds.

    Raises:
        ModelLoadError: Keys are missing or unexpected, or shapes differ; the message lists a few of each.
    """
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    expected = module.state_dict()
    # Batch norm fills a missing step counter itself (state dicts of older PyTorch versions lack it).
    missing = [k for k in expected if k not in tensors and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [f"{k} {tuple(tensors[k].shape)} (model: {tuple(v.shape)})" for k, v in expected.items()
             if k in tensors and tensors[k].shape != v.shape]
    problems = [f"{label}: {_brief(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)) if keys]
    if problems:
        raise ModelLoadError(f"{source} does not fit the model; " + "; ".join(problems))
    module.load_state_dict(dict(tensors), strict=False)


def _brief(items: list[str], shown: int = 4) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _split(spec: str) -> tuple[str, str]:
    if not is_factory_spec(spec):
        raise ModelLoadError(f"model {spec!r}: expected FILE.py:FUNCTION or package.module:FUNCTION")
    match = _SPEC.match(spec)
    assert match is not None
    return match["module"], match["function"]


def _import_file(spec: str, path: Path) -> ModuleType:
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"model {spec!r}: no file {path}")
    name = f"alva_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ModelLoadError(f"model {spec!r}: {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # so that the file can import its neighbours
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ModelLoadError(f"model {spec!r}: importing {path} raised {type(err).__name__}: {err}") from err
    finally:
        sys.path.remove(str(path.parent))
    return module


def _import_module(spec: str, name: str) -> ModuleType:
    try:
        return _import_from_here(name)
    except ModuleNotFoundError as err:
        raise ModelLoadError(f"model {spec!r}: no module {err.name!r} (give FILE.py:FUNCTION, or put the "
                             "package on PYTHONPATH)") from err
    except Exception as err:
        raise ModelLoadError(f"model {spec!r}: importing {name} raised {type(err).__name__}: {err}") from err


def _import_from_here(name: str) -> ModuleType:
    """``import name``, also from the working directory, as ``python -m`` would (the ``alva`` script's own
    folder comes first on ``sys.path`` instead)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        here = str(Path.cwd())
        if err.name != name.split(".")[0] or here in sys.path or "" in sys.path:
            raise
    sys.path.append(here)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(here)


def _refuse_system_code(spec: str, module_name: str) -> None:
    """A card names code to run: refuse the standard library, whose functions build no model but can do harm."""
    if module_name.endswith(".py"):
        stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
        system = Path(module_name).resolve().is_relative_to(stdlib)
    else:
        system = module_name.split(".")[0] in sys.stdlib_module_names
    if system:
        raise ModelLoadError(f"model {spec!r}: a card's factory may not name the Python standard library")
