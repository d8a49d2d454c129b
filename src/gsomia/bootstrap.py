"""The composition root: the only place that reads configuration and the environment, and
the one that builds what the entry points use: a node, its ASGI app, the scenario runner.

``GSOMIA_AGREEMENTS``: extra agreement folders, separated by the OS path separator, added to
whatever ``--agreements`` names on the command line.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsomia.core.agreements import Catalogue
from gsomia.core.types import Party
from gsomia.shell.catalogue import load_catalogue

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from starlette.applications import Starlette

    from gsomia.service.taxii import TaxiiService
    from gsomia.shell.node import Node
    from gsomia.shell.peer_identity import PeerRefused
    from gsomia.shell.scenarios import ScenarioRunner
    from gsomia.shell.taxii_store import SqlObjectStore

__all__ = ["AGREEMENTS_ENV", "agreement_dirs", "app_for_node", "catalogue", "collection_id",
           "cursor_secret", "init_node", "open_node", "scenario_runner", "settle_heap",
           "taxii_service"]

AGREEMENTS_ENV = "GSOMIA_AGREEMENTS"


def agreement_dirs(cli_dirs: Iterable[str | Path] = ()) -> tuple[str, ...]:
    env = [d for d in os.environ.get(AGREEMENTS_ENV, "").split(os.pathsep) if d]
    return tuple(str(d) for d in (*env, *cli_dirs))


@lru_cache(maxsize=8)
def _catalogue(dirs: tuple[str, ...]) -> Catalogue:
    return load_catalogue(dirs)


def catalogue(cli_dirs: Iterable[str | Path] = ()) -> Catalogue:
    """The agreements in effect for this process: shipped ones plus the user's folders."""
    return _catalogue(agreement_dirs(cli_dirs))


def open_node(node_dir: str | Path, cli_dirs: Iterable[str | Path] = ()) -> Node:
    """Open the node in ``node_dir`` with the agreements in effect for this process.

    The store (SQLAlchemy, and Alembic when a migration is due) is imported here, not at
    start-up, so commands that need no node start fast.
    """
    from gsomia.shell.node import open_node as _open

    node = _open(node_dir, catalogue=catalogue(cli_dirs))
    settle_heap(collect=False)
    return node


_SETTLED = [False]


def settle_heap(*, collect: bool = True) -> None:
    """Take what this process holds so far out of the cyclic garbage collector's reach.

    The imported stack and an open node (modules, SQLAlchemy's metadata, the catalogue) are
    about 100,000 objects that live as long as the process; a full collection walks them all,
    ≈50 ms of CPU during which every thread of the process stands still, and a delivery
    waiting on the process (publishing, receiving, recording the receipt) waits it out. Once
    frozen, a full collection walks only what was made since: a few milliseconds. Frozen
    objects are still freed when no longer referenced; only reference cycles among them are
    kept for good, so ``collect`` (≈50 ms, once) first clears the garbage of start-up.
    ``collect=False``: freeze once per process, without the pause (opening a node from a
    command that ends soon)."""
    if not collect:
        if _SETTLED[0]:
            return
    else:
        gc.collect()
    _SETTLED[0] = True
    gc.freeze()


def init_node(node_dir: str | Path, party: str, *, db_url: str | None = None,
              cli_dirs: Iterable[str | Path] = ()) -> Node:
    """Create a node in ``node_dir`` (see ``gsomia.shell.node.init_node``), now."""
    from datetime import UTC, datetime

    from gsomia.shell.node import init_node as _init

    return _init(node_dir, party, catalogue=catalogue(cli_dirs), now=datetime.now(UTC),
                 db_url=db_url)


def scenario_runner(cli_dirs: Iterable[str | Path] = ()) -> ScenarioRunner:
    """The scenario runner over the agreements in effect for this process."""
    from gsomia.shell.scenarios import ScenarioRunner

    return ScenarioRunner(catalogue(cli_dirs))


# ---- a node's HTTP API ------------------------------------------------------------------------

def collection_id(party: Party) -> str:
    """The id of a node's holdings collection: the same for every process of the node."""
    from gsomia.core.taxii import collection_id as named

    return named(party)


def cursor_secret(signing_key_raw: bytes) -> bytes:
    """The TAXII cursor key, derived from the node's signing key so that every API process
    of the node (over one database) shares it and no other node can forge it."""
    return hmac.new(signing_key_raw, b"gsomia/taxii-cursor-key/v1", hashlib.sha256).digest()


def taxii_service(node: Node, *, validate: Callable[[Mapping[str, Any]], None] | None = None,
                  audit_reads: str = "sync", sign_apart: bool = False
                  ) -> tuple[TaxiiService, SqlObjectStore]:
    """The TAXII service of an opened node and its object store (close the store when
    done: it commits queued access events). ``sign_apart``: the label bindings of what is
    posted are signed on a process of their own (``gsomia.shell.binding_signer``: a
    server's ingest), overlapped with the rest of each batch."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from gsomia.service.taxii import TaxiiService
    from gsomia.shell.node import taxii_collections
    from gsomia.shell.stix_check import check_stix
    from gsomia.shell.taxii_store import SqlObjectStore

    signer = None
    if sign_apart:
        from gsomia.core.crypto import fingerprint
        from gsomia.shell.binding_signer import SigningProcess

        signer = SigningProcess(node.keys.path("signing"),
                                fingerprint(node.keys.public_signing_key()))
    store = SqlObjectStore(node.store, keys=node.keys, catalogue=node.catalogue, validate=None,
                           audit_reads=audit_reads, signer=signer)
    raw = node.keys.signing_key().private_bytes(Encoding.Raw, PrivateFormat.Raw,
                                                NoEncryption())
    service = TaxiiService(store, party=node.party, vocabulary=node.catalogue.vocabulary,
                           cursor_secret=cursor_secret(raw),
                           collection_id=collection_id(node.party),
                           check=validate or check_stix,
                           collections=taxii_collections(Path(node.folder), node.config,
                                                         node.catalogue))
    return service, store


def app_for_node(node: Node, *, validate: Callable[[Mapping[str, Any]], None] | None = None,
                 partner_keys: Mapping[Party, Ed25519PublicKey] | None = None,
                 peer_identity: Callable[[Mapping[str, Any]], Party | PeerRefused | None]
                 | None = None, audit_reads: str = "sync", sign_apart: bool = False
                 ) -> Starlette:
    """The ASGI app of an opened node: its TAXII service over its store, its peer inbox,
    and the partners' pinned CAs as the peer API's idea of who is calling."""
    from gsomia.shell.api import ApiConfig, create_app
    from gsomia.shell.peer_identity import PinnedPeers
    from gsomia.shell.peer_inbox import NodeInbox

    service, store = taxii_service(node, validate=validate, audit_reads=audit_reads,
                                   sign_apart=sign_apart)
    identity = peer_identity or PinnedPeers(Path(node.folder), node.party)
    from gsomia.shell.sensor_intake import SensorIntake

    inbox = NodeInbox(node, partner_keys)
    config = ApiConfig(service=service, party=node.party, inbox=inbox, catalogue=node.catalogue,
                       peer_identity=identity, sensors=SensorIntake(node))
    app = create_app(config)
    app.state.taxii_store = store
    app.state.node_folder = Path(node.folder)  # the dashboard's partners (partners.json)
    app.state.peer_inbox = inbox  # ``serve`` closes it: the last counts of refusals
    return app
