"""Fixtures of the ingestion tests: real files, a real website on loopback, apps on both backends."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor
from conveyor.ingest import Ingestion
from conveyor.ingest.store import close_stores
from conveyor.settings import Settings
from tests.conftest import PG_ADMIN_URL

PAGES = {
    "/": ("Home of the Lighthouse Society", "The lighthouse keepers meet every Tuesday to polish the great lens.",
          ["/about.html", "/history.html", "/private.html"]),
    "/about.html": ("About us", "Our society restores copper weather vanes on forgotten coastal towers.",
                    ["/", "/history.html#top", "/members.html", "mailto:x@example.org", "javascript:alert(1)"]),
    "/history.html": ("History", "In 1887 a storm tore the lantern room away and the keepers rebuilt it in nine days.",
                      ["/about.html", "/events.html", "http://other-site.invalid/page.html"]),
    "/members.html": ("Members", "Membership costs twelve shillings and includes a brass whistle.",
                      ["/", "/events.html"]),
    "/events.html": ("Events", "The annual regatta finishes at the harbour wall with a lantern procession.",
                     ["/history.html", "/members.html?"]),
    "/private.html": ("Private", "The secret password of the society is marmalade.", ["/"]),
}


def page_html(path: str) -> bytes:
    title, body, links = PAGES[path]
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<!doctype html><html><head><title>{title}</title><style>body {{color: red}}</style>"
        f"<script>var hidden = 'script text must not be indexed';</script></head>"
        f"<body><h1>{title}</h1><p>{body}</p><ul>{anchors}</ul></body></html>"
    ).encode()


@dataclass
class Site:
    """A local website: its request log, switches for misbehaviour, and a gate that can hold one path."""

    base: str
    requests: list[str] = field(default_factory=list)
    robots_status: int = 200
    hold_path: str | None = None
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    redirect_to: str = ""
    robots_extra: str = ""

    def fetched(self, path: str) -> int:
        return sum(1 for p in self.requests if p == path)

    def pages_fetched(self) -> list[str]:
        return [p for p in self.requests if p in PAGES]


def _handler(site: Site) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 64 * 1024  # one write per response: no Nagle/delayed-ACK stalls on keep-alive

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def _send(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8", **headers: str):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path
            site.requests.append(path)
            if site.hold_path == path:
                site.held.set()
                site.release.wait(60)
            if path == "/robots.txt":
                if site.robots_status != 200:
                    self._send(site.robots_status, b"oops", "text/plain")
                else:
                    rules = "User-agent: *\nDisallow: /private.html\n" + site.robots_extra
                    self._send(200, rules.encode(), "text/plain")
            elif path in PAGES:
                self._send(200, page_html(path))
            elif path == "/report.bin":
                self._send(200, os.urandom(64), "application/octet-stream")
            elif path == "/redirect":
                self._send(302, b"", Location=site.redirect_to)
            elif path == "/drip":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.flush()
                try:
                    for _ in range(1000):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.1)
                except OSError:
                    pass
                self.close_connection = True
            elif path == "/never-ends":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                try:
                    block = b"<p>" + b"na " * 20000 + b"</p>"
                    for _ in range(100_000):
                        self.wfile.write(block)
                except OSError:
                    pass
                self.close_connection = True
            else:
                self._send(404, b"not found")

    return Handler


def serve(site_factory: Callable[[str], Site], host: str = "127.0.0.1") -> tuple[http.server.ThreadingHTTPServer, Site]:
    server = http.server.ThreadingHTTPServer((host, 0), None)  # type: ignore[arg-type]
    server.daemon_threads = True
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]  # clients hang up
    site = site_factory(f"http://{host}:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, site


@pytest.fixture(autouse=True)
def hashing_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ingestion tests embed with the hashing embedder (fast, deterministic) unless a test asks for MiniLM;
    subprocesses (`conveyor serve`, the CLI) inherit it."""
    monkeypatch.setenv("CONVEYOR_EMBEDDER", "hash")


@pytest.fixture
def site() -> Iterator[Site]:
    server, site = serve(lambda base: Site(base))
    yield site
    site.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def ingest_settings(tmp_path: Path) -> Settings:
    return Settings(
        lease_s=2.0, shutdown_grace_s=2.0, poll_interval_s=0.1, data_dir=str(tmp_path / "data"),
        crawl_allow_private=True, max_upload_mb=2,
    )


@pytest.fixture
def ingest_app(db_url: str, ingest_settings: Settings) -> Iterator[Conveyor]:
    app = Conveyor(db_url, settings=ingest_settings)
    yield app
    app.close()
    close_stores()


@pytest.fixture
def sqlite_ingest_app(sqlite_url: str, ingest_settings: Settings) -> Iterator[Conveyor]:
    app = Conveyor(sqlite_url, settings=ingest_settings)
    yield app
    app.close()
    close_stores()


@pytest.fixture
def ingestion(ingest_app: Conveyor) -> Ingestion:
    return Ingestion(ingest_app)


@pytest.fixture
def raw_pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for the store alone (the jobs backend is not needed)."""
    psycopg = pytest.importorskip("psycopg")
    name = f"ingest_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    close_stores()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ real files
def make_pdf(path: Path, lines: list[str]) -> Path:
    """A minimal, valid PDF with one page of Helvetica text, built by hand (offsets and all)."""
    text_ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        text_ops.append(f"({escaped}) Tj T*")
    text_ops.append("ET")
    content = zlib.compress("\n".join(text_ops).encode("latin-1"))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Length " + str(len(content)).encode() + b" /Filter /FlateDecode >>\nstream\n" + content
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


def make_docx(path: Path, paragraphs: list[str], table: list[list[str]] | None = None) -> Path:
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    document.save(str(path))
    return path


def wait_healthy(base: str, timeout: float = 60.0) -> None:
    """Until the server at `base` (http://host:port) answers `/healthz` with 200."""

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(healthy, timeout, f"the server at {base} to start")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(condition: Callable[[], object], timeout: float = 30.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.05)
