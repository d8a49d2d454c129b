"""Connections held against a partner's (conncap28): a server as ``node serve`` builds it
(``tls_protocol`` with JPN's pins and the 2016 GSOMIA, ``stopping_server``) in a process of
its own allowed NOFILE descriptors, from the code in TREE; COUNT connections from 127.0.0.1
that never end their TLS handshake (``raw``; ``spread``: the same from 127.0.0.3 to
127.0.0.201 in turn, so no address nears its share) or that end it without a certificate and
send a request every 3 s (``tls``); KOR's (a current partner's) request from 127.0.0.2 before,
during and after, and the server's descriptors over time. Not a test, not part of
``python -m bench``:

    PYTHONPATH=src python bench/connection_flood.py TREE raw|spread|tls [COUNT [NOFILE]]

Figures (loaded 2-core machine, NOFILE 300): main, raw 400: 132-293 descriptors held 60 s, the
partner timed out after 15 s; tls 300: 199-293 held, the partner waited up to 8.5 s. conncap28:
raw 400: 64 held, 10 s, the partner answered in 1.06 s; tls 300: 64 held, partner 10 ms.
NOFILE 1024, raw 1100: main 1017 held 60 s, the partner timed out after 15 s; conncap28: 64
held 10 s, the partner answered in 1.15 s (raw 800: 0.29 s). The second or so is asyncio's:
it accepts what the kernel queued (up to uvicorn's backlog, 2048) before any of it is cut,
and pauses accepting 1 s when that runs out of descriptors.
pinned29, NOFILE 1024, spread 400 (two from each of 199 addresses): main 256 handshakes held
10 s, the partner meanwhile reset (ConnectionResetError in 0.340 s); pinned29 (a newcomer
beyond every slot cuts the oldest handshake): 256 held, the partner answered in 0.672 s.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from gsomia.shell.keys import cert_fingerprint, create_identity

SERVER = r'''
import resource, ssl, sys, uvicorn
from pathlib import Path
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), int(sys.argv[2])))
from gsomia import bootstrap
from gsomia.core.agreements import Catalogue
from gsomia.shell.commands.serve import tls_protocol, stopping_server
from gsomia.shell.peer_identity import CurrentPartners, PinnedPeers, ca_bundle
jpn = Path(sys.argv[1]) / "JPN"
shipped = bootstrap.catalogue()
catalogue = Catalogue.of([shipped.get("jpn-kor-gsomia-2016")], shipped.schemes)
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[3]), lifespan="off",
    log_level="critical", http=tls_protocol(CurrentPartners(PinnedPeers(jpn, "JPN"), catalogue)),
    ssl_certfile=str(jpn / "tls/server.crt"), ssl_keyfile=str(jpn / "tls/server.key"),
    ssl_ca_certs=str(ca_bundle(jpn)), ssl_cert_reqs=ssl.CERT_OPTIONAL)
stopping_server(config).run()
'''
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def parties(home: Path) -> None:
    """JPN, KOR and USA's identities; JPN's partners.json pinning KOR's and USA's CAs."""
    homes = {p: home / p for p in ("JPN", "KOR", "USA")}
    for code, folder in homes.items():
        create_identity(folder, code, datetime.now(UTC))
    jpn = homes["JPN"]
    (jpn / "tls" / "partners").mkdir()
    raw = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    pinned = {}
    for i, (code, folder) in enumerate(sorted(homes.items())):
        ca = (folder / "tls" / "ca.crt").read_bytes()
        if code != "JPN":
            (jpn / "tls" / "partners" / f"{code}.crt").write_bytes(ca)
        pinned[code] = {"url": f"https://127.0.0.1:{i + 1}", "signing_public": raw,
                        "envelope_public": raw, "tls_ca_sha256": cert_fingerprint(
                            x509.load_pem_x509_certificate(ca))}
    (jpn / "partners.json").write_text(json.dumps(
        {"party": "JPN", "topology": "direct", "deliver_to": ["KOR"], "parties": pinned}))


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def partner_asks(home: Path, port: int) -> str:
    context = ssl.create_default_context(cafile=str(home / "JPN/tls/ca.crt"))
    context.load_cert_chain(str(home / "KOR/tls/client.crt"), str(home / "KOR/tls/client.key"))
    begun = time.monotonic()
    try:
        with context.wrap_socket(socket.create_connection(
                ("127.0.0.1", port), 15, source_address=("127.0.0.2", 0)),
                server_hostname="127.0.0.1") as sock:
            sock.sendall(REQUEST)
            answer = sock.recv(100)[:12].decode() or "closed"
    except OSError as e:
        answer = type(e).__name__
    return f"{answer} in {time.monotonic() - begun:.3f} s"


def refresh(held: list[socket.socket]) -> None:
    for sock in held:
        try:
            sock.sendall(REQUEST)
            sock.recv(100)
        except OSError:
            pass


def main(tree: str, mode: str, count: int, nofile: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="connection-flood-"))
    parties(home)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(home), str(nofile), str(port)],
                              env={**os.environ, "PYTHONPATH": f"{tree}/src"},
                              stderr=subprocess.DEVNULL)
    held: list[socket.socket] = []
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.3)
        base = descriptors(server.pid)
        print("partner alone:", partner_asks(home, port))
        stranger = ssl.create_default_context(cafile=str(home / "JPN/tls/ca.crt"))
        refreshed = time.monotonic()
        for i in range(count):
            # spread: from 127.0.0.3 to 127.0.0.201 in turn, none near its address's share
            source = (f"127.0.0.{3 + i % 199}", 0) if mode == "spread" else None
            try:
                sock = socket.create_connection(("127.0.0.1", port), 5, source_address=source)
                if mode == "tls":
                    sock = stranger.wrap_socket(sock, server_hostname="127.0.0.1")
                    sock.sendall(REQUEST)
                    sock.recv(100)
                held.append(sock)
            except OSError as e:
                print(f"connection {len(held) + 1}: {type(e).__name__}")
                break
            if mode == "tls" and time.monotonic() - refreshed > 3:
                refresh(held)
                refreshed = time.monotonic()
        print(f"opened {len(held)} ({mode}); server descriptors over base: "
              f"{descriptors(server.pid) - base}")
        print("partner meanwhile:", partner_asks(home, port))
        begun, last = time.monotonic(), None
        while time.monotonic() - begun < (12 if mode == "tls" else 70):
            if mode == "tls":
                refresh(held)
            now = descriptors(server.pid) - base
            if now != last:
                print(f"t={time.monotonic() - begun:5.1f} s: descriptors over base {now}")
                last = now
            if now <= 1:
                break
            time.sleep(3 if mode == "tls" else 1)
        print("partner after:", partner_asks(home, port))
    finally:
        for sock in held:
            sock.close()
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], int(args[2]) if len(args) > 2 else 400,
         int(args[3]) if len(args) > 3 else 300)
