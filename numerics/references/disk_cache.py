r"""A small on-disk cache of expensive deterministic references (the mpmath oracles).

An entry holds named float64/int64 arrays (an ``.npz`` file, read back bit for bit) under the file name

.. math::
    \mathrm{sha256}(\text{namespace},\ \text{canonical inputs},\ \text{sha256 of each source file},
    \ \text{mpmath, NumPy and Python versions},\ \text{mpmath backend}),

where the canonical inputs spell every float by its exact bits (``float.hex``), every array by its dtype,
shape and bytes, and tuples, lists, strings and ints by value.  So a different input (a changed point, time,
region spec, working precision, or anything a control changes in the reference path) or any edit of the code
that computes the reference (its source file's bytes) is a different key: a miss, never a stale hit.

Entries are written with :func:`numerics.atomic.atomic_write_bytes` (a temporary file in the cache directory,
fsynced, then renamed over the target), so concurrent workers computing the same entry leave one complete
file: a reader sees no file or a whole one.  An entry that cannot be read (truncated, not an ``.npz``, other
names, wrong key) is ignored and recomputed, and the recomputed value replaces it.

Location: the environment variable ``GUIDANCE_VERIFY_CACHE_DIR`` if set (``off``, ``0``, ``no`` or
``none`` turn the cache off: every call computes), else the platform's user cache directory
(``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows)
followed by ``guidance-verify/references``.  The tests run with the cache off (``tests/conftest.py``) except the
tests of this module, which point it at a temporary directory.
"""
from __future__ import annotations

import hashlib
import io
import os
import platform
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import mpmath as mp
import numpy as np

from numerics.atomic import atomic_write_bytes

__all__ = ["ENV", "cache_dir", "source_digest", "entry_key", "stored_arrays", "cached_arrays"]

#: The environment variable naming the cache directory (or ``off``).
ENV = "GUIDANCE_VERIFY_CACHE_DIR"
_OFF = {"off", "0", "no", "none", "false"}
#: The name under which an entry stores its own key (checked on reading).
_KEY = "__key__"


def cache_dir() -> Path | None:
    """The cache directory (``GUIDANCE_VERIFY_CACHE_DIR``, else the user cache directory), or ``None`` if the
    variable turns the cache off."""
    env = os.environ.get(ENV)
    if env is not None:
        if env.strip().lower() in _OFF:
            return None
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "guidance-verify" / "references"


@lru_cache(maxsize=None)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_digest(*paths: str | os.PathLike[str]) -> str:
    """sha256 over the sha256 of each file's bytes (in the order given): any edit of the files is a new digest.

    Raises
    ------
    ValueError
        ``paths``: empty, or a file that cannot be read.
    """
    if not paths:
        raise ValueError("paths: at least one source file is needed")
    h = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(_file_digest(os.fspath(p), st.st_mtime_ns, st.st_size).encode())
        except OSError as exc:
            raise ValueError(f"paths: cannot read {p!r} ({exc})") from None
    return h.hexdigest()


def _canon(obj: Any) -> str:
    """An exact, unambiguous text of ``obj`` (floats by their bits, arrays by dtype, shape and bytes)."""
    if obj is None or isinstance(obj, (bool, np.bool_)):
        return repr(bool(obj)) if obj is not None else "None"
    if isinstance(obj, (int, np.integer)):
        return f"i{int(obj)}"
    if isinstance(obj, (float, np.floating)):
        return f"f{float(obj).hex()}"
    if isinstance(obj, str):
        return f"s{obj!r}"
    if isinstance(obj, (tuple, list)):
        return "(" + ",".join(_canon(o) for o in obj) + ")"
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        return f"a{a.dtype.str}{a.shape}{a.tobytes().hex()}"
    raise ValueError(f"inputs: cannot key a value of type {type(obj).__name__} ({obj!r})")


def entry_key(namespace: str, inputs: Any, source: str) -> str:
    """The entry's file stem: sha256 of the namespace, :func:`_canon` of the inputs, the source digest and
    the versions of mpmath (and its backend), NumPy and Python.

    Raises
    ------
    ValueError
        ``inputs``: holds a value that has no exact text (only None, bool, int, float, str, tuples, lists and
        NumPy arrays are keyed).
    """
    text = "\n".join([namespace, _canon(inputs), source, mp.__version__, str(mp.libmp.BACKEND), np.__version__,
                      platform.python_version()])
    return hashlib.sha256(text.encode()).hexdigest()


def _read(path: Path, key: str, names: tuple[str, ...] | None) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except Exception:                       # missing, truncated, not an npz: recompute
        return None
    stored = out.pop(_KEY, None)
    if stored is None or stored.tobytes() != key.encode():
        return None
    if names is not None and set(out) != set(names):
        return None
    return out


def stored_arrays(namespace: str, inputs: Any, source: str,
                  names: tuple[str, ...] | None = None) -> dict[str, np.ndarray] | None:
    """The arrays :func:`cached_arrays` would return from the cache for these arguments, or ``None`` (a miss, or
    the cache off): a look-up that never computes.

    Raises
    ------
    ValueError
        ``inputs`` (see :func:`entry_key`).
    """
    key = entry_key(namespace, inputs, source)
    root = cache_dir()
    return None if root is None else _read(root / f"{key}.npz", key, names)


def cached_arrays(namespace: str, inputs: Any, compute: Callable[[], dict[str, np.ndarray]], source: str,
                  names: tuple[str, ...] | None = None) -> tuple[dict[str, np.ndarray], bool]:
    """``(arrays, hit)``: the arrays stored under the key of ``(namespace, inputs, source)``, or ``compute()``
    stored there (``hit`` False); with the cache off, ``compute()``.

    Parameters
    ----------
    namespace : str
        Which reference (e.g. ``"support.geometry_oracle.oracle_values"``).
    inputs : nested tuples of None, bool, int, float, str, NumPy arrays
        Every input of the computation, exactly.
    compute : callable
        Returns a dict of name -> numeric NumPy array (no objects); called on a miss.
    source : str
        :func:`source_digest` of the files whose code computes the reference.
    names : tuple of str, optional
        The names an entry must hold (an entry with other names is a miss).

    Raises
    ------
    ValueError
        ``inputs`` (see :func:`entry_key`); ``compute``: returned a non-numeric array or the name ``__key__``.
    """
    hit = stored_arrays(namespace, inputs, source, names)
    if hit is not None:
        return hit, True
    key = entry_key(namespace, inputs, source)
    root = cache_dir()
    path = None if root is None else root / f"{key}.npz"
    value = {k: np.asarray(v) for k, v in compute().items()}
    if _KEY in value or any(v.dtype.kind not in "biuf" for v in value.values()):
        raise ValueError(f"compute: must return numeric arrays under names other than {_KEY!r}")
    if path is not None:
        buf = io.BytesIO()
        np.savez(buf, **value, **{_KEY: np.frombuffer(key.encode(), dtype=np.uint8)})
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, buf.getvalue())
        except OSError:                     # a read-only or full disk: the value is still returned
            pass
    return value, False
