"""cnncourse.data.download against a real threaded HTTP server on 127.0.0.1 with Range support."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cnncourse.data import ChecksumError, DownloadError, data_dir, data_path, download


def _payload() -> bytes:
    """A small zip built here (~300 kB, stored) so a cut half-way is a real cut inside the body."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i in range(30):
            z.writestr(f"cell_images/Parasitized/P{i}_IMG_1_cell_{i}.png", bytes(range(256)) * 40 + bytes([i]))
    return buf.getvalue()


class _Server:
    """Serves ``payload`` at /file.zip; honours ``Range: bytes=N-``; optionally cuts the first response."""

    def __init__(self, payload: bytes, *, cut_first: bool = False, honour_range: bool = True):
        self.payload, self.cut_first, self.honour_range = payload, cut_first, honour_range
        self.requests: list[str | None] = []  # the Range header of each request
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                if self.path != "/file.zip":
                    self.send_error(404)
                    return
                body, status, start = outer.payload, 200, 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and outer.honour_range:
                    start = int(m.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    status = 206
                chunk = body[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(chunk)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                if outer.cut_first and len(outer.requests) == 1:
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _tmp_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNCOURSE_DATA_DIR", str(tmp_path / "cache"))


PAYLOAD = _payload()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_full_download_verifies(tmp_path):
    dest = tmp_path / "out" / "file.zip"
    with _Server(PAYLOAD) as srv:
        assert download(srv.url, dest, SHA, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("file.zip.part").exists()
    assert srv.requests == [None]
    assert zipfile.ZipFile(dest).testzip() is None


def test_download_cut_half_way_resumes_with_range(tmp_path):
    dest = tmp_path / "file.zip"
    with _Server(PAYLOAD, cut_first=True) as srv:
        download(srv.url, dest, SHA, progress=False, backoff=0)
    assert dest.read_bytes() == PAYLOAD
    # First request plain; the retry asks only for the missing second half.
    assert srv.requests[0] is None
    assert srv.requests[1] == f"bytes={len(PAYLOAD) // 2}-"
    assert len(srv.requests) == 2


def test_existing_part_file_is_resumed(tmp_path):
    dest = tmp_path / "file.zip"
    dest.with_name("file.zip.part").write_bytes(PAYLOAD[:1000])
    with _Server(PAYLOAD) as srv:
        download(srv.url, dest, SHA, progress=False)
    assert srv.requests == ["bytes=1000-"]
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(tmp_path):
    dest = tmp_path / "file.zip"
    dest.with_name("file.zip.part").write_bytes(b"stale bytes from elsewhere")
    with _Server(PAYLOAD, honour_range=False) as srv:
        download(srv.url, dest, SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_verified_file_is_not_downloaded_again(tmp_path):
    dest = tmp_path / "file.zip"
    dest.write_bytes(PAYLOAD)
    with _Server(PAYLOAD) as srv:
        download(srv.url, dest, SHA, progress=False)
    assert srv.requests == []


def test_wrong_checksum_raises_and_leaves_nothing(tmp_path):
    dest = tmp_path / "file.zip"
    wrong = "0" * 64
    with _Server(PAYLOAD) as srv, pytest.raises(ChecksumError) as info:
        download(srv.url, dest, wrong, progress=False)
    msg = str(info.value)
    assert wrong in msg and SHA in msg  # expected vs got
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []  # no .part left behind either


def test_no_server_gives_offline_message(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cell_images.zip"
    dest = tmp_path / "cell_images.zip"
    with pytest.raises(DownloadError) as info:
        download(url, dest, SHA, progress=False, retries=1, backoff=0)
    msg = str(info.value)
    assert url in msg and str(dest) in msg and "by hand" in msg and SHA in msg
    assert not dest.exists()


def test_http_404_is_not_retried(tmp_path):
    with _Server(PAYLOAD) as srv:
        with pytest.raises(DownloadError, match="404"):
            download(srv.url.replace("file.zip", "missing"), tmp_path / "x", SHA, progress=False, backoff=5)
    assert len(srv.requests) == 1


def test_bad_sha256_argument(tmp_path):
    with pytest.raises(ValueError, match="64 hex"):
        download("http://127.0.0.1:1/x", tmp_path / "x", "abc")


def test_data_dir_and_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNCOURSE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("CNNCOURSE_DATA_PATH", f"{tmp_path / 'a'}::{tmp_path / 'b'}")
    assert data_dir() == tmp_path / "d"
    assert data_path() == [tmp_path / "d", tmp_path / "a", tmp_path / "b"]
    monkeypatch.delenv("CNNCOURSE_DATA_DIR")
    assert str(data_dir()).endswith(".cache/cnncourse")


def test_malaria_fetch_falls_back_to_mirror(tmp_path, monkeypatch):
    """fetch(): the NIH address is down, the mirror serves the archive; missing CSVs only warn."""
    from cnncourse.data import downloader, malaria

    monkeypatch.setattr(downloader.time, "sleep", lambda s: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with _Server(PAYLOAD) as srv:
        monkeypatch.setattr(malaria, "URL", dead + "/cell_images.zip")
        monkeypatch.setattr(malaria, "MIRROR_URL", srv.url)
        monkeypatch.setattr(malaria, "SHA256", SHA)
        monkeypatch.setattr(malaria, "CSV_URL", dead + "/{}")
        with pytest.warns(UserWarning, match="patientid_cellmapping"):
            path = malaria.fetch(progress=False)
    assert path == tmp_path / "cache" / "cell_images.zip" and path.read_bytes() == PAYLOAD
    assert malaria.find_source() == path


def test_malaria_fetch_all_down_names_both_addresses(monkeypatch):
    from cnncourse.data import downloader, malaria

    monkeypatch.setattr(downloader.time, "sleep", lambda s: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(malaria, "URL", dead + "/a.zip")
    monkeypatch.setattr(malaria, "MIRROR_URL", dead + "/b.zip")
    with pytest.raises(DownloadError) as info:
        malaria.fetch(progress=False)
    assert "/a.zip" in str(info.value) and "/b.zip" in str(info.value) and "cell_images.zip" in str(info.value)
