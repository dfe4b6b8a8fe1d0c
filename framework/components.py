"""Components: config nodes that name a ``_target_`` and hold exactly its arguments.

``check_component`` reads the target's signature and reports, one line each and before anything
is built, a target that cannot be imported, a key the target does not accept (listing the ones it
does), a required argument that is missing and a value of the wrong type. ``build_component``
then calls ``hydra.utils.instantiate`` and turns an error raised by the target itself (torch's
``Invalid learning rate: -1.0``) into one line keyed by the config path.

The runner supplies some arguments itself (the model's ``num_classes`` and ``in_channels`` from
the dataset, the optimizer's ``params``, the pruner's ``model`` ...): they are passed only when
the target's signature has them and the node does not set them, so a model class of yours may
take any of them or none.
"""

from __future__ import annotations

import inspect
import typing
from collections import abc
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from framework.errors import ConfigError, SecateursError, short_reason

# Keys with a meaning for hydra.utils.instantiate rather than for the target.
RESERVED_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def target_path(node: Any) -> str | None:
    """The ``_target_`` string of a component node, or None."""
    if isinstance(node, (DictConfig, Mapping)):
        target = node.get("_target_")
        return target if isinstance(target, str) else None
    return None


def import_cause(error: BaseException) -> str:
    """The first cause of a failed import, as a person reads it: ``SyntaxError: invalid syntax
    (my_net.py, line 3)``, ``ModuleNotFoundError: No module named 'timm'``; Hydra's own wrapper
    ("Error loading ...") otherwise says nothing about why."""
    root = error
    seen = {id(root)}
    while True:
        nxt = root.__cause__ or root.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        root = nxt
    if root is error:
        return short_reason(error)
    if isinstance(root, SyntaxError):
        where = f" ({Path(root.filename).name}, line {root.lineno})" if root.filename else ""
        return f"SyntaxError: {root.msg}{where}"
    return f"{type(root).__name__}: {short_reason(root)}"


def locate_target(path: str, target: str) -> Callable:
    """The object ``target`` names, or a one-line ConfigError keyed by ``path``."""
    from hydra.utils import get_object

    try:
        found = get_object(target)
    except SystemExit as exit_call:  # a module that calls sys.exit() while it is imported
        raise ConfigError(
            f"{path}._target_={target!r} cannot be imported: its module called sys.exit({exit_call.code!r}) "
            'while being imported; move that call under `if __name__ == "__main__":`'
        ) from None
    except Exception as error:  # ImportError, AttributeError, or an error inside the module
        raise ConfigError(f"{path}._target_={target!r} cannot be imported: {import_cause(error)}") from None
    if not callable(found):
        raise ConfigError(f"{path}._target_={target!r} is not a class or function")
    return found


def _parameters(target: Callable) -> tuple[dict[str, inspect.Parameter], bool]:
    """Named parameters of ``target`` (a class: its ``__init__``) and whether it takes ``**kwargs``."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # some builtins have no signature: accept anything
        return {}, True
    named = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return named, takes_any


def _type_hints(target: Callable) -> dict[str, Any]:
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except Exception:  # unresolvable annotations: the target checks its own arguments
        return {}


def _matches(value: Any, hint: Any) -> bool:
    """Whether a config value fits a type hint; unknown kinds of hints accept anything."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (origin is not None and type(hint).__name__ == "UnionType"):
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if value is None:
        return False
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    container = origin or hint
    if container in (list, tuple, set, abc.Sequence, abc.Iterable, abc.Collection):
        return isinstance(value, (list, tuple, ListConfig))
    if container in (dict, abc.Mapping):
        return isinstance(value, (dict, DictConfig))
    return True  # tensors, modules, user classes: left to the target


def _describe(hint: Any) -> str:
    text = getattr(hint, "__name__", None) if typing.get_origin(hint) is None else None
    return text or str(hint).replace("typing.", "")


def component_problems(path: str, node: Any, supplied: Iterable[str] = ()) -> list[str]:
    """Every mistake in component ``node`` at config ``path``, one line each (recursing into
    nested components such as ``pruner.criterion``). ``supplied`` are the arguments the runner
    passes itself."""
    target = target_path(node)
    if target is None:
        return [f"{path}._target_ is missing; allowed: the import path of a class or function"]
    try:
        found = locate_target(path, target)
    except ConfigError as error:
        return [str(error)]
    parameters, takes_any = _parameters(found)
    hints = _type_hints(found)
    given = [key for key in node.keys() if key not in RESERVED_KEYS]
    accepted = [name for name in parameters if name not in supplied and name != "self"]
    problems = []
    for key in given:
        if key not in parameters and not takes_any:
            shown = ", ".join(accepted) or "(none)"
            problems.append(f"{path}.{key} is not an argument of {target}; accepted: {shown}")
    partial = bool(node.get("_partial_", False))
    for name, parameter in parameters.items():
        if name in given or name in supplied or name == "self":
            continue
        if parameter.default is inspect.Parameter.empty and not partial:
            problems.append(f"{path}.{name} is required by {target}; add +{path}.{name}=<value>")
    for key in given:
        value = node[key]
        if target_path(value) is not None:
            problems.extend(component_problems(f"{path}.{key}", value))
            continue
        if key in hints and not OmegaConf.is_missing(node, key):
            plain = (
                OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
            )
            if not _matches(plain, hints[key]):
                problems.append(
                    f"{path}.{key}={plain!r} has the wrong type for {target}; expected {_describe(hints[key])}"
                )
    return problems


def check_component(path: str, node: Any, supplied: Iterable[str] = ()) -> None:
    """Raise one ConfigError listing every problem of ``node`` (see :func:`component_problems`)."""
    problems = component_problems(path, node, supplied)
    if problems:
        raise ConfigError("\n".join(problems))


def build_component(path: str, node: Any, **supplied: Any) -> Any:
    """Check ``node`` and instantiate it; ``supplied`` arguments are passed where the target
    accepts them and the node does not set them. Errors raised by the target become one line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    target = target_path(node)
    parameters, takes_any = _parameters(locate_target(path, target)) if target else ({}, True)
    passed = {k: v for k, v in supplied.items() if (takes_any or k in parameters) and k not in node}
    check_component(path, node, supplied=passed)
    try:
        if node.get("_partial_", False):
            # A factory in the config (optimizers, schedulers): called here with what the runner
            # supplies, so the target's own errors are caught and keyed like the others.
            return instantiate(node, _convert_="all")(**passed)
        return instantiate(node, **passed, _convert_="all")
    except SecateursError as error:
        raise type(error)(f"{path} ({target}): {error}") from None
    except InstantiationException as error:
        cause = error.__cause__ or error
        if isinstance(cause, SecateursError):
            raise type(cause)(f"{path} ({target}): {cause}") from None
        raise ConfigError(f"{path} ({target}): {short_reason(cause)}") from None
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise ConfigError(f"{path} ({target}): {short_reason(error)}") from None
