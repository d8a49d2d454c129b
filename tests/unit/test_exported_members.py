"""The public surface of the core and the service, as httpx pins its own: each package and
each module says what it exports, in ``__all__``, and nothing else is public."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import gsomia.core
import gsomia.service
from surfaces import public_definitions

CORE = ["AuditEvent", "AuditKind", "AuditUnavailable", "Agreement", "Catalogue", "Decision",
        "Envelope", "GsomiaError", "LabelVocabulary", "MalformedInput", "NoEquivalent",
        "NotFound", "PARTIES", "Party", "PeerUnavailable", "Person", "PolicyDenied",
        "PortTaken", "ProofInvalid", "Receipt", "ReleaseRequest", "Replayed", "RolledBack",
        "SECRET_LEVELS", "Scheme", "SecurityLabel", "TreeHead", "Unavailable", "bind", "decide",
        "decide_access", "instant", "iso", "party", "utc_text", "verify_binding",
        "verify_log"]
SERVICE = ["KeyStore", "LabelRequest", "ObjectStore", "PeerInbox", "Repository", "Served",
           "TaxiiService", "UnitOfWork", "agreement_story"]

# A package of modules by role (service/handlers, core/tracking) is not a module here: its
# surface is pinned by its own test (test_package_surfaces); core/tracking's is still moving
# (issue 13).


@pytest.mark.parametrize(("package", "expected"), [(gsomia.core, CORE),
                                                   (gsomia.service, SERVICE)])
def test_a_package_exports_exactly_its_public_surface(package: object,
                                                      expected: list[str]) -> None:
    exported = getattr(package, "__all__")  # noqa: B009
    assert sorted(exported) == sorted(expected)
    assert len(set(exported)) == len(exported)
    # each module read once, not once per name: parsing the package's sources for each of
    # its ~40 names was 9 s of CPU
    defined = [(m, public_definitions(Path(getattr(m, "__file__"))))  # noqa: B009
               for m in _modules(package, roles=True)]
    for name in exported:
        value = getattr(package, name)
        # the one module that defines it
        (home,) = [m for m, names in defined if name in names]
        assert value is getattr(home, name), name


def test_a_name_outside_the_surface_is_no_attribute() -> None:
    with pytest.raises(AttributeError):
        _ = gsomia.core.no_such_name
    with pytest.raises(AttributeError):
        _ = gsomia.service.handlers_by_another_name


def _modules(package: object, *, roles: bool = False) -> list[object]:
    """The package's modules; with ``roles``, also those of its packages split by role
    (``service/handlers/_publishing.py``), where what the package exports is defined."""
    path = getattr(package, "__path__")  # noqa: B009
    prefix = getattr(package, "__name__") + "."  # noqa: B009
    walk = pkgutil.walk_packages if roles else pkgutil.iter_modules
    return [importlib.import_module(info.name)
            for info in walk(path, prefix)
            if not info.ispkg]



@pytest.mark.parametrize("module", [m for p in (gsomia.core, gsomia.service)
                                    for m in _modules(p)],
                         ids=lambda m: getattr(m, "__name__", "?"))
def test_a_module_says_what_it_exports_and_exports_what_it_defines(module: object) -> None:
    exported = getattr(module, "__all__", None)
    assert exported is not None, "no __all__"
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(module, name), name
    defined = public_definitions(Path(getattr(module, "__file__")))  # noqa: B009
    assert defined <= set(exported), f"public but not exported: {defined - set(exported)}"
