"""``passbench data fetch NAME [--to DIR] [--mirror URL]`` and ``passbench data check mot|h36m DIR``.

Exit codes: 0 done / complete; 1 the fetch failed (network, corrupt archive, a layout that is not the
benchmark's) or the check found something missing (listed); 2 a usage error (unknown benchmark, a DIR
that is not a folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _cmd_fetch(args: argparse.Namespace) -> int:
    from passbench.datafetch.catalog import get  # noqa: PLC0415
    from passbench.datafetch.download import DownloadError  # noqa: PLC0415
    from passbench.datafetch.fetch import FetchError, fetch  # noqa: PLC0415

    try:
        get(args.name)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    try:
        done = fetch(args.name, args.to, mirror=args.mirror, progress=args.progress, keep_archive=args.keep_archive,
                     log=lambda s: print(s, flush=True))
    except (FetchError, DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"data root: --data-root {done.root}   (or export PASSBENCH_DATA={done.root})")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from passbench.datafetch.check import check_h36m, check_mot  # noqa: PLC0415

    root = Path(args.dir).expanduser()
    if not root.is_dir():
        print(f"error: {root} is not a directory", file=sys.stderr)
        return 2
    try:
        if args.kind == "h36m":
            found = {"Human36M": check_h36m(root)}
        else:
            found = check_mot(root, args.benchmark or None)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rc = 0
    for name, problems in found.items():
        if problems:
            rc = 1
            print(f"{name}: INCOMPLETE, {len(problems)} problems:")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"{name}: complete under {root}")
    return rc


def register_cli(sub: Any) -> None:
    """Add ``data fetch`` / ``data check`` to the ``passbench`` subcommands."""
    d = sub.add_parser("data", help="fetch a MOTChallenge benchmark, or check a data root")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    f = dsub.add_parser("fetch", help="download, verify, extract and check MOT15 | MOT16 | MOT17 | MOT20")
    f.add_argument("name", help="MOT15, MOT16, MOT17 or MOT20")
    f.add_argument("--to", default=None, help="data root (default: $PASSBENCH_DATA or <repo>/data)")
    f.add_argument("--mirror", default=None,
                   help="base URL of the archives (default: $PASSBENCH_MIRROR or https://motchallenge.net/data)")
    f.add_argument("--keep-archive", action="store_true", help="keep the zip after extracting it")
    f.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="download progress bar (default: only when stderr is a terminal)")
    f.set_defaults(fn=_cmd_fetch)
    c = dsub.add_parser("check", help="check a data root you already have and list exactly what is missing")
    c.add_argument("kind", choices=("mot", "h36m"))
    c.add_argument("dir", help="the data root (holding MOT17/ ... or Human36M/)")
    c.add_argument("--benchmark", action="append", default=None,
                   help="mot: only this benchmark (repeatable; default: every one present)")
    c.set_defaults(fn=_cmd_check)
