"""``gsomia node serve``: the node's HTTP API over HTTPS, served by uvicorn.

People authenticate with bearer or basic credentials; partner nodes with TLS client
certificates, which the server asks for but does not require at the handshake
(``CERT_OPTIONAL``), so that people's tools need none. A certificate that is presented must
chain to a CA this node trusts (its own, and partners' CAs in ``tls/partners/*.crt``); the
peer API then takes the party from the certificate's organisational unit, and refuses
requests without one.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from gsomia.core.errors import MalformedInput
from gsomia.core.types import Party

_NAMESPACE = uuid.UUID("6f1d0c9e-8f8e-4b0f-9b6c-5c0a1e6f4d21")


def collection_id(party: Party) -> str:
    """The id of a node's holdings collection: the same for every process of the node."""
    return str(uuid.uuid5(_NAMESPACE, f"taxii-collection/{party}/holdings"))


def cursor_secret(signing_key_raw: bytes) -> bytes:
    """The TAXII cursor key, derived from the node's signing key so that every API process
    of the node (over one database) shares it and no other node can forge it."""
    return hmac.new(signing_key_raw, b"gsomia/taxii-cursor-key/v1", hashlib.sha256).digest()


def app_for_node(node: Any, *, validate: Any = None, partner_keys: Mapping[Party, Any] | None
                 = None, peer_identity: Any = None, audit_reads: str = "sync") -> Any:
    """The ASGI app of an opened node (``gsomia.shell.node.Node``)."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from gsomia.service.taxii import TaxiiService
    from gsomia.shell.api import ApiConfig, create_app, tls_peer
    from gsomia.shell.peer_inbox import NodeInbox
    from gsomia.shell.stix_check import check_stix
    from gsomia.shell.taxii_store import SqlObjectStore

    check = validate or check_stix
    store = SqlObjectStore(node.store, keys=node.keys, catalogue=node.catalogue, validate=None,
                           audit_reads=audit_reads)
    raw = node.keys.signing_key().private_bytes(Encoding.Raw, PrivateFormat.Raw,
                                                NoEncryption())
    service = TaxiiService(store, party=node.party, schemes=node.catalogue.schemes,
                           cursor_secret=cursor_secret(raw),
                           collection_id=collection_id(node.party), check=check)
    config = ApiConfig(service=service, party=node.party,
                       inbox=NodeInbox(node, partner_keys),
                       peer_identity=peer_identity or tls_peer)
    app = create_app(config)
    app.state.taxii_store = store
    return app


def trusted_cas(folder: Path) -> Path:
    """One PEM bundle of the CAs whose client certificates this node accepts."""
    own = folder / "tls" / "ca.crt"
    partners = sorted((folder / "tls" / "partners").glob("*.crt"))
    if not partners:
        return own
    bundle = folder / "tls" / "trusted-cas.pem"
    data = b"".join(p.read_bytes() for p in [own, *partners])
    if not bundle.exists() or bundle.read_bytes() != data:
        tmp = bundle.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(bundle)
    return bundle


def _party_of_certificate(der: bytes) -> Party | None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_der_x509_certificate(der)
        units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    except ValueError:
        return None
    value = units[0].value if units else None
    return value if isinstance(value, str) and len(value) == 3 and value.isupper() else None


def tls_protocol() -> type:
    """uvicorn's h11 protocol, putting the verified client certificate's party into the ASGI
    TLS extension (``scope["extensions"]["tls"]``) of every request on the connection."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TlsH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            tls: dict[str, Any] = {
                "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
                "client_party": _party_of_certificate(der) if der else None,
            }
            inner = self.app

            async def app(scope: Any, receive: Any, send: Any) -> None:
                scope.setdefault("extensions", {})["tls"] = tls
                await inner(scope, receive, send)

            self.app = app

    return TlsH11Protocol


def serve(node_dir: str, host: str, port: int, *, log_level: str = "warning",
          audit_reads: str = "sync", check_partners: bool = True) -> None:
    import uvicorn

    from gsomia import bootstrap
    from gsomia.shell.partner_check import check_at_start

    # The server, the sender and the notice threads share the GIL. A thread back from a
    # disk sync or a socket waits for it up to the switch interval while another computes
    # (5 ms by default, paid at each of a delivery's many SQLite calls when the node is
    # busy): 0.5 ms bounds that wait at light load for a few more switches under load.
    sys.setswitchinterval(0.0005)
    node = bootstrap.open_node(node_dir)
    if check_partners:
        try:
            check_at_start(node)
        except BaseException:
            node.close()
            raise
    folder = Path(node.folder)
    app = app_for_node(node, audit_reads=audit_reads)
    from gsomia.shell.stix_check import _validators

    _validators()  # compile the schemas before the first request, not during it
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False,
        http=tls_protocol(), lifespan="off", timeout_graceful_shutdown=3,
        ssl_certfile=str(folder / "tls" / "server.crt"),
        ssl_keyfile=str(folder / "tls" / "server.key"),
        ssl_ca_certs=str(trusted_cas(folder)), ssl_cert_reqs=ssl.CERT_OPTIONAL)
    server = uvicorn.Server(config)
    click.echo(f"gsomia {node.party} node: https://{host}:{port}/taxii2/", err=True)
    try:
        server.run()
    finally:
        app.state.taxii_store.close()  # commit queued access events before leaving
        node.close()


def register(cli: click.Group) -> None:
    node_group = cli.commands.get("node")
    if not isinstance(node_group, click.Group):
        @cli.group("node")
        def node_group_fn() -> None:
            """Create, inspect and serve a node."""

        node_group = node_group_fn

    @node_group.command("serve")
    @click.option("--dir", "node_dir", required=True, type=click.Path(file_okay=False),
                  help="The node folder (from node init).")
    @click.option("--host", default="127.0.0.1", show_default=True,
                  help="Address to listen on.")
    @click.option("--port", default=8443, show_default=True, type=int, help="TCP port.")
    @click.option("--log-level", default="warning", show_default=True,
                  type=click.Choice(["critical", "error", "warning", "info", "debug"]))
    @click.option("--audit-reads", default="sync", show_default=True,
                  type=click.Choice(["sync", "batched"]),
                  help="sync: each read's audit event is durable before it is served; "
                       "batched: events are committed together within 50 ms (faster reads; "
                       "a crash in that window loses the record of reads already served).")
    def serve_cmd(node_dir: str, host: str, port: int, log_level: str,
                  audit_reads: str) -> None:
        """Serve the node's TAXII 2.1 and peer API over HTTPS (uvicorn)."""
        if not 0 < port < 65536:
            raise MalformedInput(f"{port} is not a TCP port", where="--port",
                                 expected="1 to 65535")
        serve(node_dir, host, port, log_level=log_level, audit_reads=audit_reads)
