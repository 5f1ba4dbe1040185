"""Public data in one command: ``passbench data fetch MOT17`` and ``passbench data check mot|h36m DIR``.

    catalog.py   the benchmarks (archive and sequence names), mirror URL
    download.py  resumable HTTP download (Range) with a progress bar
    check.py     is a MOT / Human3.6M root complete? (lists what is missing)
    fetch.py     download -> sha256 lock -> extract into a temporary folder -> check -> rename
    cli.py       the ``passbench data`` subcommands

Public API: ``fetch(name, to=None, mirror=None)``, ``check_mot(root)``, ``check_h36m(root)``,
``BENCHMARKS``, ``FetchError``, ``DownloadError``. Imports no torch.
"""

from passbench.datafetch.catalog import BENCHMARKS, Benchmark, archive_url
from passbench.datafetch.check import check_h36m, check_mot
from passbench.datafetch.download import DownloadError, download
from passbench.datafetch.fetch import LOCK, FetchError, Fetched, fetch, read_lock

__all__ = ["BENCHMARKS", "LOCK", "Benchmark", "DownloadError", "FetchError", "Fetched", "archive_url", "check_h36m",
           "check_mot", "download", "fetch", "read_lock"]
