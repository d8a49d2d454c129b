"""What the transport needs of a node (``NodePort``), and the clock it reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gsomia.core.agreements import Catalogue
from gsomia.core.types import Party
from gsomia.service.ports import KeyStore
from gsomia.shell.store import SqlUnitOfWork, Store

Clock = Callable[[], datetime]


class NodePort(Protocol):
    """What the transport needs of a node (``gsomia.shell.node.Node``)."""

    @property
    def folder(self) -> Path: ...

    @property
    def party(self) -> Party: ...

    @property
    def keys(self) -> KeyStore: ...

    @property
    def catalogue(self) -> Catalogue: ...

    @property
    def store(self) -> Store: ...

    def uow(self) -> SqlUnitOfWork: ...
