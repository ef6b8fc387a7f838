"""Users' models by reference: a built-in name, ``"pkg.module:factory"`` or ``"file.py:factory"``.

A factory is any callable returning an ``nn.Module`` (a function or a class) or a Keras model.
It is called with whichever of ``num_classes``, ``in_channels``, ``norm`` and ``norm_options`` it
accepts by name (a ``**kwargs`` parameter accepts all of them), and with ``input_shape`` where
it names it: one example's shape in Keras's channels-last order ``(height, width, channels)``,
as ``keras.Input(shape=...)`` takes it. A factory that takes ``norm`` builds the
requested normalization itself. One that does not gets it through
:func:`~normlab.surgery.swap_norm`: every BatchNorm layer of the model it built is replaced by
the requested norm (with ``norm="bn"`` and no options, the model's own BatchNorm layers are the
baseline and stay untouched). A model without BatchNorm layers has nothing to vary and is
refused.

``"path/to/file.py:factory"`` loads the file with ``importlib.util.spec_from_file_location``
under a module name derived from its absolute path (``normlab_user_model_<hash>``), registered
in ``sys.modules`` so that classes defined there pickle and dataclasses work; a relative path is
relative to the current directory, and the file's folder is on ``sys.path`` while it loads (its
imports of sibling files work, as when it runs as a script). The file is loaded again when it
changes. Every error is one :class:`NormlabError` line naming the reference.

A Keras model (Sequential or functional) is converted by :func:`normlab.keras.from_keras` (the
optional extra ``normlab[keras]``; the ``keras`` library is imported only then); its ``BatchNormalization`` layers become
``bn_keras`` layers, which the swap replaces as any BatchNorm. Before a model file is loaded,
``KERAS_BACKEND`` is set to ``torch`` if unset (:func:`normlab.keras.prefer_torch_backend`), so
that the file's ``import keras`` needs no TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.errors import NormlabError
from normlab.keras import from_keras
from normlab.keras.backend import INSTALL_HINT, is_keras_model, missing_keras, prefer_torch_backend
from normlab.models import MODELS, build_builtin_model
from normlab.surgery import swap_norm

FACTORY_ARGUMENTS = ("num_classes", "in_channels", "norm", "norm_options")
"""What normlab offers a factory; it gets those its signature accepts."""

KERAS = "keras"
""":func:`model_format` of a factory that returns a Keras model."""

_FORMATS: dict[str, tuple[Callable[..., Any], str]] = {}
"""Reference -> (its factory, :func:`model_format` of what it returned), for the factories
built in this process (a reloaded file gives a new factory)."""

_LOADED_FILES: dict[Path, tuple[tuple[int, int], ModuleType]] = {}
"""Modules loaded from files, by absolute path, with the (mtime_ns, size) they were loaded at."""


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _split(ref: str) -> tuple[str, str]:
    """``(module or file, factory attribute path)``; a bad reference is refused."""
    target, colon, attribute = ref.rpartition(":")  # rpartition: "C:\\net.py:f" keeps its drive
    if not colon or not target or not attribute:
        raise NormlabError(
            f"model {ref!r} is neither a built-in model ({', '.join(MODELS)}) nor a factory "
            "reference 'pkg.module:factory' or 'path/to/file.py:factory'"
        )
    return target, attribute


def _is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _load_file(ref: str, target: str) -> ModuleType:
    path = Path(target).expanduser().resolve()
    if path.suffix != ".py":
        raise NormlabError(f"model {ref!r}: {target} is not a .py file")
    if not path.is_file():
        raise NormlabError(f"model {ref!r}: file not found: {path}")
    stat = path.stat()
    version = (stat.st_mtime_ns, stat.st_size)
    cached = _LOADED_FILES.get(path)
    if cached is not None and cached[0] == version:
        return cached[1]
    name = "normlab_user_model_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NormlabError(f"model {ref!r}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before executing it: dataclasses and pickling look it up
    sys.path.insert(0, str(path.parent))
    prefer_torch_backend()
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise NormlabError(
            f"model {ref!r}: loading {path} raised {_one_line(error)}{_keras_hint(error)}"
        ) from error
    finally:
        sys.path.remove(str(path.parent))
    _LOADED_FILES[path] = (version, module)
    return module


def _import_module(ref: str, target: str) -> ModuleType:
    # The current folder is importable as under `python -m` (the console script's sys.path
    # lacks it): `normlab run --model mypkg.nets:make` works from the project's folder.
    added = os.getcwd() not in sys.path
    if added:
        sys.path.append(os.getcwd())
    prefer_torch_backend()
    try:
        return importlib.import_module(target)
    except ImportError as error:
        raise NormlabError(
            f"model {ref!r}: cannot import {target}: {_one_line(error)}{_keras_hint(error)}"
        ) from error
    except Exception as error:  # the user's module failed while executing
        raise NormlabError(
            f"model {ref!r}: importing {target} raised {_one_line(error)}"
        ) from error
    finally:
        if added:
            sys.path.remove(os.getcwd())


def _keras_hint(error: BaseException) -> str:
    return f"; Keras models need the extra: {INSTALL_HINT}" if missing_keras(error) else ""


def absolute_ref(ref: str, folder: str | Path | None = None) -> str:
    """``ref`` with a relative ``file.py`` made absolute (relative to ``folder``, default the
    current one), so that a study does not depend on where it was started; names and
    ``pkg.module:factory`` references are returned as they are."""
    target, colon, attribute = ref.rpartition(":")
    if not colon or not target or not _is_file(target):
        return ref
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = Path(folder or Path.cwd()) / path
    return f"{path.resolve()}:{attribute}"


def resolve_factory(ref: str) -> Callable[..., Any]:
    """The factory callable that ``ref`` (not a built-in name) points to."""
    target, attribute = _split(ref)
    module = _load_file(ref, target) if _is_file(target) else _import_module(ref, target)
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise NormlabError(f"model {ref!r}: {target} has no factory {attribute!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise NormlabError(
            f"model {ref!r}: {attribute!r} in {target} is a {type(factory).__name__}, "
            "not a callable factory"
        )
    return factory


def _accepted(factory: Callable[..., Any]) -> tuple[set[str], bool]:
    """Keyword names ``factory`` accepts, and whether it takes ``**kwargs``."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature (some builtins): offer nothing by name
        return set(), False
    names = {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def check_model_ref(ref: str) -> None:
    """Refuse ``ref`` unless it is a built-in name or resolves to a callable (not called)."""
    if ref not in MODELS:
        resolve_factory(ref)


def model_takes_norm(ref: str) -> bool:
    """Whether the model builds the requested norm itself (built-ins, factories taking ``norm``
    or ``**kwargs``); otherwise normlab reaches it with ``swap_norm``."""
    if ref in MODELS:
        return True
    names, var_keyword = _accepted(resolve_factory(ref))
    return var_keyword or "norm" in names


def build_model_from_ref(
    ref: str,
    *,
    num_classes: int,
    in_channels: int,
    norm: str | None,
    norm_options: Mapping[str, Any] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    **options: Any,
) -> nn.Module:
    """Build the model ``ref`` for ``num_classes`` classes and ``in_channels`` input channels,
    normalized by ``norm``.

    ``norm=None`` returns the model as its factory builds it (a built-in then uses ``bn``, its
    default). ``options`` go to the built-in model or the factory, which must accept each of them.
    ``input_shape``: one example's (channels, height, width), offered to a factory that names
    ``input_shape`` as Keras orders it, (height, width, channels). A Keras model is converted
    (:func:`normlab.keras.from_keras`) before its BatchNorm layers are reached.
    """
    norm_options = dict(norm_options or {})
    if ref in MODELS:
        return build_builtin_model(
            ref,
            num_classes=num_classes,
            in_channels=in_channels,
            norm=norm or "bn",
            norm_options=norm_options,
            **options,
        )
    factory = resolve_factory(ref)
    names, var_keyword = _accepted(factory)
    offered: dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels}
    if norm is not None:
        offered |= {"norm": norm, "norm_options": norm_options}
    arguments = {k: v for k, v in offered.items() if var_keyword or k in names}
    # By name only, not through **kwargs: existing factories may pass those on to layers.
    if "input_shape" in names and input_shape is not None:
        channels, height, width = input_shape
        arguments["input_shape"] = (height, width, channels)
    for option in options:
        if not var_keyword and option not in names:
            raise NormlabError(f"model {ref!r}: the factory does not take option {option!r}")
    _seed_keras()
    try:
        model = factory(**arguments, **options)
    except Exception as error:
        raise NormlabError(f"model {ref!r}: the factory raised {_one_line(error)}") from error
    keras_model = is_keras_model(model)
    _FORMATS[ref] = (factory, KERAS if keras_model else "")
    if keras_model:  # before the nn.Module check: on PyTorch's backend a Keras model is one
        model = _from_keras(ref, model)
    if not isinstance(model, nn.Module):
        raise NormlabError(
            f"model {ref!r}: the factory returned a {type(model).__name__}, not a torch.nn.Module "
            "or a Keras model"
        )
    if norm is None or "norm" in arguments:
        return model
    return _reach_norm(ref, model, norm, norm_options)


def _seed_keras() -> None:
    """Seed Keras from torch's seed (which the engine sets to the run's) when Keras is loaded.

    Keras draws initial weights from its own seed (Python's ``random`` unless set), not torch's:
    unseeded, a Keras factory's weights would change from process to process, and a run could
    not be reproduced. ``set_random_seed`` also reseeds torch with the same seed, a no-op right
    after ``torch.manual_seed`` (the engine and the doctor build straight after it)."""
    keras = sys.modules.get("keras")
    utils = getattr(keras, "utils", None)
    if utils is not None and hasattr(utils, "set_random_seed"):
        utils.set_random_seed(torch.initial_seed() % 2**32)


def _from_keras(ref: str, model: Any) -> nn.Module:
    try:
        converted = from_keras(model)
    except NormlabError as error:
        raise NormlabError(f"model {ref!r}: {error}") from None
    if converted.output_activation == "softmax":
        raise NormlabError(
            f"model {ref!r}: the Keras model ends in a softmax, and normlab trains on logits "
            "(cross-entropy); end it with Dense(num_classes) without activation"
        )
    return converted


def model_format(
    ref: str, *, num_classes: int, in_channels: int, input_shape: tuple[int, int, int]
) -> str:
    """``"keras"`` when the factory ``ref`` returns a Keras model, else ``""`` (built-ins and
    PyTorch factories). Known without building once the factory has built in this process."""
    if ref in MODELS:
        return ""
    known = _FORMATS.get(ref)
    if known is None or known[0] is not resolve_factory(ref):
        build_model_from_ref(
            ref,
            num_classes=num_classes,
            in_channels=in_channels,
            norm=None,
            input_shape=input_shape,
        )
    return _FORMATS[ref][1]


def _reach_norm(ref: str, model: nn.Module, norm: str, norm_options: dict[str, Any]) -> nn.Module:
    """Swap the BatchNorm layers of a factory's model to ``norm``."""
    if not any(isinstance(module, _BatchNorm) for module in model.modules()):
        raise NormlabError(
            f"model {ref!r} has no BatchNorm layer for norm={norm!r} to replace and its factory "
            "takes no 'norm' argument; add one, or build the model with BatchNorm layers"
        )
    if norm == "bn" and not norm_options:
        return model  # the model's own BatchNorm layers are the baseline
    try:
        return swap_norm(model, norm, **norm_options)
    except NormlabError as error:
        raise NormlabError(f"model {ref!r}: {error}") from None
