"""A node folder: its configuration, keys and store, composed into one object.

``node.toml`` (mode 0600: a PostgreSQL URL may carry a password)::

    [node]
    party = "KOR"
    created = "2026-01-01T00:00:00Z"

    [database]
    url = "sqlite:///node.db"      # a relative SQLite path is inside the folder

    [keys]
    signing = "keys/signing.key"   # ... every file of gsomia.shell.keys.KEY_FILES

    [[taxii.collections]]          # optional, any number: see gsomia.core.taxii
    name = "warnings-secret"       # the collection's id derives from the party and name
    level = "秘"                   # the label plain STIX posted there gets
    rel_to = ["JPN", "KOR", "USA"]
    purpose = "dprk-missile"

    [limits]                       # optional: rows a partner may make the node keep
    standing_consents_per_partner = 1000      # defaults: gsomia.core.limits.PARTNER_ROWS
    standing_revocations_per_partner = 1000
    incidents_per_partner = 1000
    consent_requests_per_partner = 1000
    classification_notices_per_partner = 1000
    incident_window_hours = 24                # incidents_per_partner counts in this window
    notice_window_hours = 24                  # classification_notices_per_partner, this one
    revocation_window_hours = 24              # standing_revocations_per_partner, this one
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gsomia.core.agreements import Catalogue
from gsomia.core.errors import MalformedInput
from gsomia.core.outbox import Routing
from gsomia.core.types import Party, iso, party
from gsomia.service import handlers
from gsomia.shell.keys import KEY_FILES, FileKeyStore, create_identity
from gsomia.shell.signatures import SignatureWorker
from gsomia.shell.store import HEAD_FILE, SqlUnitOfWork, Store, mask_url, resolve_url

CONFIG = "node.toml"
DEFAULT_DB = "sqlite:///node.db"


@dataclass(frozen=True)
class NodeConfig:
    party: Party
    database: str
    created: str
    keys: Mapping[str, str] = field(default_factory=lambda: dict(KEY_FILES))
    # ``[taxii]`` as written; its collections are checked against the agreements when the
    # node serves (``taxii_collections``), since the agreements may come from elsewhere.
    taxii: Mapping[str, Any] = field(default_factory=dict)
    # ``[limits]`` as written (checked on load); ``partner_rows`` adds the defaults.
    limits: Mapping[str, int] = field(default_factory=dict)

    @property
    def partner_rows(self) -> dict[str, int]:
        """The bound of each kind of row a partner makes this node keep."""
        from gsomia.core.limits import partner_rows

        return partner_rows(self.limits)

    def to_toml(self) -> str:
        def s(text: str) -> str:
            return json.dumps(text)  # a JSON string is a valid TOML basic string

        lines = ["# gsomia node configuration, written by `gsomia node init`.", "[node]",
                 f"party = {s(self.party)}", f"created = {s(self.created)}", "",
                 "[database]", f"url = {s(self.database)}", "", "[keys]"]
        lines += [f"{name} = {s(path)}" for name, path in self.keys.items()]
        if self.limits:
            lines += ["", "[limits]", *(f"{k} = {int(v)}" for k, v in self.limits.items())]
        return "\n".join(lines) + "\n"

    @classmethod
    def load(cls, folder: Path) -> NodeConfig:
        path = folder / CONFIG
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise MalformedInput(f"{folder} is not a node folder (no {CONFIG})", where="node",
                                 expected="a folder made by gsomia node init") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise MalformedInput(f"cannot read {path}: {exc}", where=str(path)) from None
        try:
            node, db = data["node"], data["database"]
            keys = {**KEY_FILES, **{str(k): str(v) for k, v in data.get("keys", {}).items()}}
            taxii = data.get("taxii", {})
            if not isinstance(taxii, dict) or set(taxii) - {"collections"}:
                raise MalformedInput("[taxii] holds only collections", where=f"{path}: taxii",
                                     expected="[[taxii.collections]] tables")
            limits = data.get("limits", {})
            if not isinstance(limits, dict):
                raise MalformedInput("[limits] is not a table", where=f"{path}: limits",
                                     expected="name = bound lines")
            from gsomia.core.limits import partner_rows

            partner_rows(limits, where=f"{path}: limits")
            return cls(party(node["party"], where=f"{path}: node.party"), str(db["url"]),
                       str(node.get("created", "")), keys, taxii, dict(limits))
        except (KeyError, TypeError):
            raise MalformedInput("incomplete configuration", where=str(path),
                                 expected="[node] party and [database] url") from None


def taxii_collections(folder: Path, config: NodeConfig, catalogue: Catalogue
                      ) -> tuple[Any, ...]:
    """The labelled TAXII collections ``node.toml`` defines (``gsomia.core.taxii``), each
    label checked against ``catalogue``; MalformedInput naming the file and field."""
    from gsomia.core.taxii import parse_collections

    return parse_collections(config.taxii.get("collections", []), party=config.party,
                             vocabulary=catalogue.vocabulary,
                             where=f"{folder / CONFIG}: taxii.collections")


class Node:
    """An opened node: party, keys, store and the agreements it knows."""

    def __init__(self, folder: Path, config: NodeConfig, keys: FileKeyStore, store: Store,
                 catalogue: Catalogue) -> None:
        self.folder = folder
        self.config = config
        self.keys = keys
        self.store = store
        self.catalogue = catalogue
        store.routing = self.routing
        # Public keys only ever reach it; its process starts with the first large batch.
        self.signatures = SignatureWorker()

    def routing(self) -> Routing:
        """Whom this node delivers to, as its partners.json says now."""
        from gsomia.shell.exchange import Partners

        partners = Partners.load(self.folder)
        if partners is None:
            return Routing(self.party, (), self.catalogue, federated=False)
        return Routing(self.party, partners.deliver_to, self.catalogue)

    @property
    def party(self) -> Party:
        return self.config.party

    def uow(self) -> SqlUnitOfWork:
        return self.store.uow()

    def close(self) -> None:
        self.signatures.close()
        self.store.dispose()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _occupied(folder: Path) -> list[str]:
    names = [CONFIG, HEAD_FILE, "node.db", "keys", "tls"]
    return [n for n in names if (folder / n).exists()]


def init_node(folder: str | Path, party_code: str, *, catalogue: Catalogue, now: datetime,
              db_url: str | None = None) -> Node:
    """Create a node: keys, certificates, database (migrated), configuration, first event.

    Refuses a folder that already holds a node, and a database that already belongs to one.
    On failure nothing this call created is left behind.
    """
    folder = Path(folder).resolve()
    code = party(party_code, where="party")
    if code not in catalogue.schemes:
        raise MalformedInput(f"no classification scheme for {code}", where="party",
                             expected="one of " + ", ".join(sorted(catalogue.schemes)))
    if folder.exists() and not folder.is_dir():
        raise MalformedInput(f"{folder} is not a folder", where="folder")
    taken = _occupied(folder)
    if taken:
        raise MalformedInput(f"{folder} already holds a node ({', '.join(taken)}); "
                             "refusing to overwrite it", where="folder",
                             expected="a new or empty folder")
    url = db_url or DEFAULT_DB
    existed = folder.exists()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    store: Store | None = None
    try:
        store = Store(resolve_url(url, folder), head_file=folder / HEAD_FILE)
        database = store.engine.url.database
        if store.dialect == "sqlite" and database and os.path.exists(database):
            os.chmod(database, 0o600)  # SQLite gives its -wal and -shm files the same mode
        if store.node_identity() is not None:
            raise MalformedInput("the database already belongs to a node", where="db",
                                 expected="an empty database for a new node")
        fingerprints = create_identity(folder, code, now)
        keys = FileKeyStore(folder, code)
        store.signer = keys.signing_key()
        store.set_node_identity(code, fingerprints["signing_key"], now)
        config = NodeConfig(code, url, iso(now))
        handlers.initialise(store.uow(), keys=keys, now=now, identity=fingerprints)
        fd = os.open(folder / CONFIG, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(config.to_toml())
    except BaseException:
        if store is not None:
            store.dispose()
        for name in _occupied(folder):
            target = folder / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        for extra in ("node.db-wal", "node.db-shm"):
            (folder / extra).unlink(missing_ok=True)
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return Node(folder, config, keys, store, catalogue)


def open_node(folder: str | Path, *, catalogue: Catalogue) -> Node:
    """Open a node folder; the database is migrated to the current schema if needed."""
    folder = Path(folder).resolve()
    config = NodeConfig.load(folder)
    keys = FileKeyStore(folder, config.party, config.keys)
    signer = keys.signing_key()
    store = Store(resolve_url(config.database, folder), signer=signer,
                  head_file=folder / HEAD_FILE)
    identity = store.node_identity()
    from gsomia.core.crypto import fingerprint

    if identity is None or identity["party"] != config.party \
            or identity["signing_key"] != fingerprint(signer):
        store.dispose()
        raise MalformedInput(
            f"the database at {mask_url(config.database)} does not belong to this node "
            f"({config.party}, key {fingerprint(signer)[:16]}…)", where=str(folder / CONFIG),
            expected="the database node init created for this folder")
    return Node(folder, config, keys, store, catalogue)


def new_token() -> str:
    """A user's secret: 32 random bytes, URL-safe text (shown once, stored hashed)."""
    return "gs_" + secrets.token_urlsafe(32)


_OPTIONS: Any = None


def validate_stix(obj: Mapping[str, Any]) -> None:
    """Check a STIX 2.1 object with stix2-validator; MalformedInput lists what is wrong.

    stix2validator costs seconds to import (jsonschema's format checkers), so it is loaded
    on first use only.
    """
    global _OPTIONS
    from stix2validator import ValidationOptions, validate_instance

    if _OPTIONS is None:
        _OPTIONS = ValidationOptions(version="2.1")
    where = f"object {obj.get('id', '?')}" if isinstance(obj, Mapping) else "object"
    try:
        result = validate_instance(dict(obj), _OPTIONS)
    except Exception as exc:  # the validator raises anything on odd input
        raise MalformedInput(f"not a valid STIX 2.1 object ({exc})", where=where,
                             expected="a STIX 2.1 object (type, spec_version, id, ...)") \
            from None
    if not result.is_valid:
        errors = [str(getattr(e, "message", e)) for e in result.errors]
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5
                                          else "")
        raise MalformedInput(f"not a valid STIX 2.1 object: {shown}", where=where,
                             expected="an object that stix2-validator accepts")
