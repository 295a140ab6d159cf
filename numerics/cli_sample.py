"""``guidance-verify sample``: guided samples from a built-in target, saved as ``.npy`` plus a scatter plot."""
from __future__ import annotations

import argparse
import io
import os
import sys
from datetime import datetime, timezone

import numpy as np

from numerics.builtin_targets import get_target
from numerics.atomic import atomic_write_bytes

__all__ = ["run"]


def _scatter_png(gm, xs: np.ndarray, title: str) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.scatter(xs[:, 0], xs[:, 1] if xs.shape[1] > 1 else np.zeros(len(xs)), s=4, alpha=0.5, label="samples")
    ax.scatter(gm.means[:, 0], gm.means[:, 1] if gm.d > 1 else np.zeros(gm.K), c=gm.labels, marker="x", s=60,
               cmap="tab10", label="component means")
    ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


#: API parameter names of :func:`numerics.samplers.sample` that are command-line flags.
_FLAGS = ("label", "guidance", "n", "seed", "method")


def _flag_message(exc: Exception) -> str:
    """The API's message, one line, with a leading ``label:`` turned into ``argument --label:``."""
    text = " ".join(str(exc).split())
    for name in _FLAGS:
        if text.startswith(f"{name}:"):
            return f"argument --{name}{text[len(name):]}"
    return text


def run(args: argparse.Namespace) -> int:
    """Draw ``args.n`` samples and write ``samples.npy`` and ``samples.png`` into ``args.out``.

    The command line (:mod:`numerics.cli`) has already checked ``args.out`` (writable, and not
    holding earlier samples unless ``--force``) before this runs.
    """
    from numerics.samplers import sample

    gm = get_target(args.target)
    label = None if args.guidance == 1.0 and args.label is None else args.label
    try:
        xs = sample(gm, method=args.method, n=args.n, seed=args.seed, label=label, guidance=args.guidance)
    except (ValueError, TypeError) as exc:  # the API's validation: one line naming the flag
        print(f"guidance-verify: error: {_flag_message(exc)}", file=sys.stderr)
        return 2
    out = args.out or os.path.join("results", "sample-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    os.makedirs(out, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, xs)
    atomic_write_bytes(os.path.join(out, "samples.npy"), buf.getvalue())
    title = f"{args.target}: {args.method}, class {label}, w = {args.guidance:g}, n = {args.n}"
    atomic_write_bytes(os.path.join(out, "samples.png"), _scatter_png(gm, xs, title))
    print(f"wrote {args.n} samples to {out}/samples.npy and a scatter plot to {out}/samples.png")
    return 0
