"""``passbench data fetch`` / ``data check`` against an HTTP server on 127.0.0.1 serving archives built here."""

from __future__ import annotations

import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from passbench.cli import main
from passbench.datafetch import LOCK, Benchmark, DownloadError, FetchError, check_h36m, check_mot, download, fetch
from passbench.datafetch import catalog
from passbench.datafetch.check import check_benchmark

BENCH = Benchmark("MOTX", "MOTX.zip", train=("MOTX-01", "MOTX-02"), test=("MOTX-03",),
                  known={"MOTX-01": catalog.Known(frames=3, width=16, height=12)})


def _jpeg(w: int, h: int, seed: int) -> bytes:
    import cv2

    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def build_archive(top: str | None = "MOTX", frames: int = 3, drop: str | None = None, wh=(16, 12), seed: int = 0
                  ) -> bytes:
    """A zip in the MOTChallenge layout of :data:`BENCH` (``top`` None: ``train/`` at the top, as MOT16.zip)."""
    buf = io.BytesIO()
    pre = f"{top}/" if top else ""
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for split, names in BENCH.splits().items():
            for name in names:
                d = f"{pre}{split}/{name}"
                zf.writestr(f"{d}/seqinfo.ini", "[Sequence]\nname={}\nimDir=img1\nframeRate=30\nseqLength={}\n"
                                                "imWidth={}\nimHeight={}\nimExt=.jpg\n".format(name, frames, *wh))
                for i in range(1, frames + 1):
                    if f"{name}/{i:06d}.jpg" != drop:
                        zf.writestr(f"{d}/img1/{i:06d}.jpg", _jpeg(wh[0], wh[1], seed + i))
                zf.writestr(f"{d}/det/det.txt", "1,-1,1,1,5,5,0.9,-1,-1,-1\n")
                if split == "train":
                    zf.writestr(f"{d}/gt/gt.txt", "1,1,1,1,5,5,1,1,1.0\n")
    return buf.getvalue()


class Server:
    """Serves ``files`` {name: bytes} with HTTP Range support; ``cut_after`` bytes ends the next response early."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: int | None = None
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                body = outer.files.get(self.path.lstrip("/"))
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                if body is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(body):
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                send = body[start:]
                if outer.cut_after is not None:
                    send, outer.cut_after = send[: outer.cut_after], None
                    self.wfile.write(send)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(send)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".MOTX.extract"))


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    body = bytes(range(256)) * 4000
    server.files["f.bin"] = body
    server.cut_after = 300_000
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        download(f"{server.url}/f.bin", dest, progress=False)
    assert not dest.exists() and (tmp_path / "f.bin.part").stat().st_size == 300_000
    download(f"{server.url}/f.bin", dest, progress=False)
    assert server.ranges == [None, "bytes=300000-"]
    assert dest.read_bytes() == body and not (tmp_path / "f.bin.part").exists()


def test_fetch_extracts_checks_records_the_sha_and_prints_the_root(server, tmp_path, monkeypatch, capsys):
    archive = build_archive()
    server.files["MOTX.zip"] = archive
    server.cut_after = len(archive) // 2  # the first attempt is interrupted; the CLI's re-run resumes it
    monkeypatch.setattr(catalog, "BENCHMARKS", {**catalog.BENCHMARKS, "MOTX": BENCH})
    monkeypatch.setenv("PASSBENCH_MIRROR", server.url)
    root = tmp_path / "data"
    assert main(["data", "fetch", "MOTX", "--to", str(root), "--no-progress"]) == 1
    assert "resume" in capsys.readouterr().err and not (root / "MOTX").exists()
    assert main(["data", "fetch", "motx", "--to", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"--data-root {root}" in out
    assert server.ranges[-1] == f"bytes={len(archive) // 2}-"
    assert check_benchmark(root / "MOTX", BENCH) == []
    lock = json.loads((root / LOCK).read_text())
    import hashlib

    assert lock["MOTX"]["sha256"] == hashlib.sha256(archive).hexdigest()
    assert lock["MOTX"]["url"] == f"{server.url}/MOTX.zip"
    assert not (root / ".passbench-download").exists() and _leftovers(root) == []
    # a second fetch finds it complete and downloads nothing
    n = len(server.ranges)
    assert main(["data", "fetch", "MOTX", "--to", str(root)]) == 0
    assert len(server.ranges) == n and "already complete" in capsys.readouterr().out


def test_archive_with_train_at_the_top_is_placed_under_its_name(server, tmp_path):
    server.files["MOTX.zip"] = build_archive(top=None)
    done = fetch(BENCH, tmp_path, mirror=server.url, progress=False, log=lambda s: None)
    assert done.folder == tmp_path / "MOTX" and check_benchmark(done.folder, BENCH) == []


def test_a_later_fetch_must_match_the_locked_sha256(server, tmp_path):
    server.files["MOTX.zip"] = build_archive()
    fetch(BENCH, tmp_path, mirror=server.url, progress=False, log=lambda s: None)
    import shutil

    shutil.rmtree(tmp_path / "MOTX")
    server.files["MOTX.zip"] = build_archive(seed=100)  # a valid archive with other bytes
    with pytest.raises(FetchError, match="differs from .* recorded in"):
        fetch(BENCH, tmp_path, mirror=server.url, progress=False, log=lambda s: None)
    assert not (tmp_path / "MOTX").exists() and not (tmp_path / ".passbench-download" / "MOTX.zip").exists()


def test_corrupted_archive_is_a_clear_error_and_leaves_nothing(server, tmp_path):
    good = build_archive()
    bad = bytearray(good)
    i = good.index(b"MOTX-02/img1/000002.jpg") + 200  # inside that member's data: its CRC no longer matches
    bad[i:i + 8] = b"\xff" * 8
    server.files["MOTX.zip"] = bytes(bad)
    with pytest.raises(FetchError, match="corrupted|not a readable zip"):
        fetch(BENCH, tmp_path, mirror=server.url, progress=False, log=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".passbench-download"]
    assert list((tmp_path / ".passbench-download").iterdir()) == []  # the bad archive is gone: a re-run re-downloads
    server.files["MOTX.zip"] = b"this is not a zip at all"
    with pytest.raises(FetchError, match="not a readable zip"):
        fetch(BENCH, tmp_path, mirror=server.url, progress=False, log=lambda s: None)
    assert not (tmp_path / "MOTX").exists() and _leftovers(tmp_path) == []


def test_archive_missing_a_frame_is_refused_before_anything_lands(server, tmp_path):
    server.files["MOTX.zip"] = build_archive(drop="MOTX-02/000002.jpg")
    with pytest.raises(FetchError, match=r"MOTX-02/img1: 1 of 3 frames missing .*000002\.jpg"):
        fetch(BENCH, tmp_path, mirror=server.url, progress=False, log=lambda s: None)
    assert not (tmp_path / "MOTX").exists() and _leftovers(tmp_path) == []


def test_unknown_benchmark_is_a_usage_error(capsys):
    assert main(["data", "fetch", "MOT18"]) == 2
    assert "unknown benchmark 'MOT18'" in capsys.readouterr().err


def test_check_mot_lists_exactly_what_is_missing(server, tmp_path, monkeypatch, capsys):
    server.files["MOTX.zip"] = build_archive()
    fetch(BENCH, tmp_path, mirror=server.url, progress=False, log=lambda s: None)
    (tmp_path / "MOTX/train/MOTX-02/img1/000003.jpg").unlink()
    (tmp_path / "MOTX/train/MOTX-01/gt/gt.txt").unlink()
    import shutil

    shutil.rmtree(tmp_path / "MOTX/test/MOTX-03")
    problems = check_mot(tmp_path, catalog={"MOTX": BENCH})["MOTX"]
    assert len(problems) == 3
    assert any("MOTX-01/gt/gt.txt: missing" in p for p in problems)
    assert any("MOTX-02/img1: 1 of 3 frames missing" in p and "000003.jpg" in p for p in problems)
    assert any("1 of 1 sequences missing: MOTX-03" in p for p in problems)
    monkeypatch.setattr(catalog, "BENCHMARKS", {**catalog.BENCHMARKS, "MOTX": BENCH})
    assert main(["data", "check", "mot", str(tmp_path)]) == 1
    assert "MOTX: INCOMPLETE, 3 problems" in capsys.readouterr().out


def test_check_mot_compares_with_known_metadata_and_image_headers(server, tmp_path):
    server.files["MOTX.zip"] = build_archive(frames=3, wh=(16, 12))
    fetch(BENCH, tmp_path, mirror=server.url, progress=False, log=lambda s: None)
    ini = tmp_path / "MOTX/train/MOTX-01/seqinfo.ini"
    ini.write_text(ini.read_text().replace("imWidth=16", "imWidth=20"))
    problems = check_benchmark(tmp_path / "MOTX", BENCH)
    assert any("000001.jpg: 16x12 px, seqinfo.ini says imWidth x imHeight = 20x12" in p for p in problems)
    assert any("the benchmark's MOTX-01 has 3 frames of 16x12 px" in p for p in problems)


def test_real_catalogue_names_and_the_mot17_metadata():
    mot17 = catalog.get("MOT17")
    assert len(mot17.train) == len(mot17.test) == 21 and "MOT17-02-SDP" in mot17.train
    assert mot17.known["MOT17-05-FRCNN"] == catalog.Known(837, 640, 480)  # passbench.datasets.scenes
    assert catalog.archive_url(mot17, "http://m/x/") == "http://m/x/MOT17.zip"
    assert catalog.archive_url(catalog.get("MOT20")) == "https://motchallenge.net/data/MOT20.zip"


def test_check_h36m_names_the_missing_files_folders_and_images(tmp_path, capsys):
    from passbench.datasets.synthetic_h36m import generate

    assert "Human36M: missing" in check_h36m(tmp_path)[0]
    generate(tmp_path, subjects=(9,), actions=(3,), subactions=(1,), cams=(1, 2), frames=3, size=64, workers=1)
    problems = check_h36m(tmp_path, subjects=(9,))
    assert problems == []
    img = tmp_path / "Human36M/images"
    (img / "s_09_act_03_subact_01_ca_01/s_09_act_03_subact_01_ca_01_000002.jpg").unlink()
    import shutil

    shutil.rmtree(img / "s_09_act_03_subact_01_ca_02")
    problems = check_h36m(tmp_path, subjects=(9, 11))
    assert len(problems) == 3
    assert any(p.startswith("subject 11: missing") and "Human36M_subject11_camera.json" in p for p in problems)
    assert any("1 of 2 image folders of subject 9 missing" in p and "s_09_act_03_subact_01_ca_02" in p for p in problems)
    assert any("1 of 3 images missing" in p and "_000002.jpg" in p for p in problems)
    assert main(["data", "check", "h36m", str(tmp_path)]) == 1
    assert "Human36M: INCOMPLETE" in capsys.readouterr().out
    assert main(["data", "check", "h36m", str(tmp_path / "nope")]) == 2
