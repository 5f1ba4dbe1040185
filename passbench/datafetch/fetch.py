"""``passbench data fetch NAME``: download, verify, extract and check one MOTChallenge benchmark.

1. ``<root>/<NAME>`` already there and complete (:func:`passbench.datafetch.check.check_benchmark`): nothing
   to do. There but incomplete: an error listing what is wrong (a user's folder is never touched).
2. download ``<mirror>/<NAME>.zip`` into ``<root>/.passbench-download/`` (resumable,
   :mod:`passbench.datafetch.download`);
3. sha256 of the archive against the lock file ``<root>/passbench-data.lock.json``: the first fetch of
   a benchmark into a root records it (with the URL, size and date), later fetches must match it. A
   mismatch is an error and the archive is deleted (a re-run downloads it again);
4. extract into a temporary folder under the root (every member's CRC checked; no member may leave the
   folder), find the benchmark inside it (``<NAME>/train`` or, as MOT16.zip has it, ``train/`` at the
   top), check it, and only then rename it to ``<root>/<NAME>``. Any failure removes the temporary
   folder: nothing half-extracted is left under the data root;
5. delete the archive (``keep_archive`` keeps it) and return the ``--data-root`` to use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from passbench.datafetch.catalog import Benchmark, archive_url, get
from passbench.datafetch.check import check_benchmark
from passbench.datafetch.download import download

LOCK = "passbench-data.lock.json"
DOWNLOADS = ".passbench-download"
_SHOW = 8


class FetchError(RuntimeError):
    """The fetch failed; the message says why and what was left (nothing half-extracted)."""


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` did: ``root`` (pass it as ``--data-root``), ``folder`` (``<root>/<NAME>``),
    ``sha256`` of the archive (None when the benchmark was already there), ``downloaded``."""

    root: Path
    folder: Path
    sha256: str | None
    downloaded: bool


def default_root() -> Path:
    """``$PASSBENCH_DATA`` when set, else ``<repo>/data`` (git-ignored)."""
    from passbench.paths import REPO_ROOT  # noqa: PLC0415

    env = os.environ.get("PASSBENCH_DATA")
    return Path(env).expanduser() if env else REPO_ROOT / "data"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_lock(root: Path) -> dict:
    """The lock file's ``{benchmark: {sha256, url, bytes, fetched_utc}}`` (empty when absent).

    Raises:
        FetchError: the file is not a JSON object (names it).
    """
    p = Path(root) / LOCK
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text())
    except ValueError as e:
        raise FetchError(f"{p}: not valid JSON ({e}); fix or delete it") from None
    if not isinstance(data, dict):
        raise FetchError(f"{p}: expected a JSON object {{benchmark: {{sha256, ...}}}}")
    return data


def _write_lock(root: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{LOCK}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, root / LOCK)


def _extract(archive: Path, into: Path) -> None:
    """Every member of ``archive`` below ``into``, CRCs checked (raises FetchError naming the archive)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise FetchError(f"{archive}: corrupted (CRC error in {bad})")
            top = into.resolve()
            for m in zf.infolist():
                target = (into / m.filename).resolve()
                if target != top and top not in target.parents:
                    raise FetchError(f"{archive}: member {m.filename!r} would be written outside {into}")
            zf.extractall(into)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise FetchError(f"{archive}: not a readable zip archive ({e})") from None


def _benchmark_dir(tmp: Path, bench: Benchmark) -> Path:
    """The folder holding ``train``/``test`` inside the extracted archive."""
    for cand in (tmp / bench.name, tmp):
        if (cand / "train").is_dir() or (cand / "test").is_dir():
            return cand
    subs = [p for p in tmp.iterdir() if p.is_dir()]
    if len(subs) == 1 and ((subs[0] / "train").is_dir() or (subs[0] / "test").is_dir()):
        return subs[0]
    found = sorted(p.name for p in tmp.iterdir())[:_SHOW]
    raise FetchError(f"the archive holds no {bench.name}/train or train/ folder (top level: {', '.join(found)})")


def fetch(name: str | Benchmark, to: str | os.PathLike[str] | None = None, *, mirror: str | None = None,
          progress: bool | None = None, keep_archive: bool = False, log: Callable[[str], None] = print,
          catalog: Mapping[str, Benchmark] | None = None) -> Fetched:
    """Fetch one benchmark into ``to`` (module docstring).

    Args:
        name: ``MOT15``, ``MOT16``, ``MOT17``, ``MOT20`` (or a :class:`Benchmark`).
        to: the data root (default :func:`default_root`); created when missing.
        mirror: base URL instead of ``$PASSBENCH_MIRROR`` / motchallenge.net.
        progress: the download's progress bar (None: when stderr is a terminal).
        keep_archive: keep the zip under ``<root>/.passbench-download/`` after extraction.

    Raises:
        KeyError: unknown benchmark name.
        FetchError: the folder exists but is incomplete, the archive's sha256 differs from the lock file,
            the archive is corrupt, or the extracted layout is not the benchmark's (lists the problems).
        DownloadError: the download failed (a re-run resumes it).
    """
    bench = name if isinstance(name, Benchmark) else get(name, catalog)
    root = Path(to).expanduser() if to is not None else default_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / bench.name
    if folder.exists():
        problems = check_benchmark(folder, bench)
        if problems:
            raise FetchError(f"{folder} exists but is incomplete ({len(problems)} problems):\n  "
                             + "\n  ".join(problems[:_SHOW]) + ("\n  ..." if len(problems) > _SHOW else "")
                             + f"\nmove it away (or fix it) and fetch again; passbench does not overwrite it")
        log(f"{bench.name}: already complete under {root}")
        return Fetched(root, folder, None, False)
    url = archive_url(bench, mirror)
    archive = root / DOWNLOADS / bench.archive
    if archive.is_file():  # a complete earlier download (only a finished one leaves the .part name)
        log(f"{bench.name}: using the archive downloaded earlier, {archive}")
    else:
        log(f"{bench.name}: downloading {url}")
        download(url, archive, progress=progress)
    sha = file_sha256(archive)
    lock = read_lock(root)
    entry = lock.get(bench.name)
    if entry is not None and entry.get("sha256") != sha:
        archive.unlink()
        raise FetchError(f"{url}: sha256 {sha} differs from {entry.get('sha256')} recorded in {root / LOCK} when "
                         f"{bench.name} was first fetched ({entry.get('fetched_utc')}, {entry.get('url')}); the "
                         "archive was deleted. A changed or corrupted download: fetch again, or delete the lock "
                         "entry if the archive changed on purpose")
    tmp = Path(tempfile.mkdtemp(prefix=f".{bench.name}.extract-", dir=root))
    try:
        log(f"{bench.name}: extracting {archive.name} ({archive.stat().st_size / 2**20:.0f} MiB)")
        try:
            _extract(archive, tmp)
        except FetchError:
            archive.unlink(missing_ok=True)  # corrupt: the next fetch downloads it again
            raise
        src = _benchmark_dir(tmp, bench)
        problems = check_benchmark(src, bench)
        if problems:
            raise FetchError(f"{url}: the archive's {bench.name} is not the benchmark's layout ({len(problems)} "
                             "problems):\n  " + "\n  ".join(p.replace(str(src), bench.name) for p in problems[:_SHOW])
                             + ("\n  ..." if len(problems) > _SHOW else ""))
        os.replace(src, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if entry is None:
        from passbench.records import utc_now  # noqa: PLC0415

        lock[bench.name] = {"sha256": sha, "url": url, "bytes": archive.stat().st_size, "fetched_utc": utc_now()}
        _write_lock(root, lock)
    if not keep_archive:
        archive.unlink()
        try:
            archive.parent.rmdir()
        except OSError:
            pass
    log(f"{bench.name}: complete ({sum(len(v) for v in bench.splits().values())} sequences checked)")
    return Fetched(root, folder, sha, True)
