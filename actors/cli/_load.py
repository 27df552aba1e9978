"""Finding the user's App from ``module:attribute``, with any import error in one line."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path

from ..jobs import App
from ._errors import FAILURE, USAGE, AppLoadError

__all__ = ["load_app"]

_HINT_PATH = "give APP_PATH as module:attribute or path/to/file.py:attribute"


def _on_path(folder: str) -> None:
    if folder not in sys.path:
        sys.path.insert(0, folder)


def load_app(path: str) -> App:
    """Import ``module:attribute`` (or ``path/to/file.py:attribute``) and return the App.

    The attribute (default ``app``; dotted names such as ``jobs.app`` work) may be an
    :class:`App` or a zero-argument callable returning one. The module is imported with the
    working directory on ``sys.path``; a file's folder is put there too, so it imports its
    siblings as it would when run. The attribute is found with :func:`pkgutil.resolve_name`.

    Raises:
        AppLoadError: the path names no module, file or attribute (exit status 2), or the
            module or the callable raised while loading (exit status 1). The message names
            the module and the error, in one line.
    """
    module_name, _, attribute = path.partition(":")
    attribute = attribute or "app"
    if not module_name:
        raise AppLoadError(f"no module in APP_PATH {path!r}", _HINT_PATH, USAGE)
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        file = Path(module_name)
        if not file.is_file():
            raise AppLoadError(f"no file {module_name!r}", "check the path", USAGE)
        _on_path(str(file.resolve().parent))
        module_name = file.stem
    _on_path(os.getcwd())
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(f"{missing}.")):
            raise AppLoadError(
                f"cannot import {module_name!r}: no module named {missing!r}",
                f"{_HINT_PATH}, run from the folder holding the module",
                USAGE,
            ) from exc
        raise _failed(module_name, exc, "install it or fix the import") from exc
    except Exception as exc:
        raise _failed(module_name, exc, "fix the module") from exc
    except SystemExit as exc:
        raise _failed(module_name, exc, "the module must not exit when imported") from exc
    try:
        target = pkgutil.resolve_name(f"{module_name}:{attribute}")
    except (AttributeError, ValueError) as exc:
        raise AppLoadError(
            f"module {module_name!r} has no attribute {attribute!r}", _HINT_PATH, USAGE
        ) from exc
    if callable(target) and not isinstance(target, App):
        try:
            target = target()
        except Exception as exc:
            raise AppLoadError(
                f"{path!r} raised {type(exc).__name__}: {exc}",
                "fix the function building the App; run with -v for the traceback",
                FAILURE,
            ) from exc
    if not isinstance(target, App):
        raise AppLoadError(
            f"{path!r} is a {type(target).__name__}, not an actorq App",
            "point APP_PATH at an App, or a function returning one",
            USAGE,
        )
    return target


def _failed(module_name: str, exc: BaseException, hint: str) -> AppLoadError:
    return AppLoadError(
        f"module {module_name!r} failed to import: {type(exc).__name__}: {exc}",
        f"{hint}; run with -v for the traceback",
        FAILURE,
    )
