"""Resumable HTTP(S) download with a progress bar (standard library only).

The bytes go to ``<dest>.part``; a later call asks the server for the rest (``Range: bytes=N-``) and
appends when it answers ``206 Partial Content`` with a ``Content-Range`` that starts at N, or starts over
when it answers ``200`` (a server without range support). The part file becomes ``dest`` only when
every byte the server announced has arrived, so an interrupted download never passes for a whole one.
"""

from __future__ import annotations

import http.client
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

CHUNK = 1 << 20
TIMEOUT_S = 60.0
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(OSError):
    """The download did not complete; the message names the URL and says whether a re-run resumes."""


def _bar(total: int | None, initial: int, desc: str, show: bool):
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not show, leave=False, file=sys.stderr, dynamic_ncols=True)


def download(url: str, dest: Path, *, progress: bool | None = None, timeout: float = TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest``, resuming ``<dest>.part`` when it exists.

    Args:
        url: http(s) URL of the file.
        dest: final path; its folder is created.
        progress: a byte progress bar on stderr (None: only when stderr is a terminal).
        timeout: seconds without data before giving up (the part file is kept: a re-run resumes).

    Returns:
        ``dest``.

    Raises:
        DownloadError: an HTTP error, a network error, or fewer bytes than announced (the part file is
            kept for resuming where that makes sense; the message says so).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "passbench-data-fetch", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    show = sys.stderr.isatty() if progress is None else bool(progress)
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part file already holds every byte
            part.replace(dest)
            return dest
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{url}: cannot connect ({reason}); check the network or use --mirror URL"
                            + (f" (a re-run resumes {part})" if have else "")) from None
    with resp:
        total = None
        if resp.status == 206 and have:
            m = _RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise DownloadError(f"{url}: the server answered the range request for bytes {have}- with "
                                    f"Content-Range {resp.headers.get('Content-Range')!r}; delete {part} and retry")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        else:  # 200: the whole file (a server that ignores Range starts over)
            have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        got = have
        with open(part, mode) as fh, _bar(total, have, dest.name, show) as bar:
            try:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            except (http.client.IncompleteRead, OSError) as e:
                raise DownloadError(f"{url}: interrupted after {got} of {total or '?'} bytes ({type(e).__name__}); "
                                    f"run the same command again to resume from {part}") from None
    if total is not None and got != total:
        raise DownloadError(f"{url}: interrupted after {got} of {total} bytes; run the same command again to resume "
                            f"from {part}")
    part.replace(dest)
    return dest
