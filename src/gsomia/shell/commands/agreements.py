"""``agreement``, ``classify``, ``release-check`` and ``label``: the agreements, the release
policy, and the labels they allow."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import click

from gsomia.core.agreements import Agreement, status
from gsomia.core.errors import MalformedInput
from gsomia.core.policy import ReleaseRequest
from gsomia.core.types import instant, party
from gsomia.service import handlers
from gsomia.shell.commands.common import (
    agreements_option,
    catalogue,
    emit_json,
    json_option,
    label_options,
    read_json_input,
    split_values,
)


def agreement_json(a: Agreement) -> dict[str, Any]:
    return {
        "id": a.id, "title": a.title, "description": a.description,
        "legally_binding": a.legally_binding, "parties": sorted(a.parties),
        "topology": a.topology, "hub": a.hub, "highest_level": a.highest_level,
        "equivalence": [{"english": r.english, "levels": {p: list(v) for p, v in r.levels.items()}}
                        for r in a.equivalence],
        "purposes": dict(a.purposes),
        "information_kinds": sorted(a.information_kinds) if a.information_kinds else None,
        "term": {"years": a.term_years, "automatic_renewal": a.automatic_renewal,
                 "notice_days": a.notice_days},
        "history": [{"date": h.on.isoformat(), "event": h.kind, "by": h.by, "note": h.note}
                    for h in a.history],
        "source": a.source,
    }


def register(cli: click.Group) -> None:
    @cli.group("agreement")
    def agreement() -> None:
        """The agreements this node knows: list, show, status at a date."""

    @agreement.command("list")
    @agreements_option
    @json_option
    @click.option("--at", "at_text", metavar="DATE", help="Show each state at this date.")
    def list_(agreement_dirs: tuple[str, ...], as_json: bool, at_text: str | None) -> None:
        """List every agreement with its parties and its state (today's unless --at)."""
        from datetime import UTC, datetime

        at = instant(at_text) if at_text else datetime.now(UTC)
        cat = catalogue(agreement_dirs)
        rows = [{"id": a.id, "parties": sorted(a.parties), "topology": a.topology,
                 "legally_binding": a.legally_binding, "highest_level": a.highest_level,
                 **status(a, at).to_json()} for a in sorted(cat.agreements.values(),
                                                            key=lambda a: a.id)]
        if as_json:
            emit_json({"at": at.date().isoformat(), "agreements": rows})
            return
        for r in rows:
            extra = f" until {r['terminates_on']}" if r["terminates_on"] else ""
            click.echo(f"{r['id']:<22} {'-'.join(r['parties']):<12} {r['topology']:<9} "
                       f"≤{r['highest_level']:<12} {r['state']}{extra}")

    @agreement.command("show")
    @click.argument("agreement_id")
    @agreements_option
    @json_option
    def show(agreement_id: str, agreement_dirs: tuple[str, ...], as_json: bool) -> None:
        """Show one agreement: parties, equivalence table, scope, term and history."""
        a = catalogue(agreement_dirs).get(agreement_id)
        if as_json:
            emit_json(agreement_json(a))
            return
        click.echo(f"{a.id}: {a.title}")
        click.echo(f"  parties {', '.join(sorted(a.parties))}; topology {a.topology}"
                   + (f" via {a.hub}" if a.hub else "")
                   + ("" if a.legally_binding else "; not legally binding"))
        click.echo(f"  highest level covered: {a.highest_level}")
        for row in a.equivalence:
            click.echo(f"  {row.english:<13} " + "  ".join(
                f"{p} {' / '.join(v)}" for p, v in row.levels.items()))
        click.echo("  purposes: " + ", ".join(a.purposes))
        if a.information_kinds:
            click.echo("  information kinds: " + ", ".join(sorted(a.information_kinds)))
        click.echo(f"  term: {a.term_years or 'indefinite'} year(s), automatic renewal "
                   f"{'yes' if a.automatic_renewal else 'no'}, notice {a.notice_days} days")
        for h in a.history:
            click.echo(f"  {h.on}  {h.kind:<22} {h.by or '':<4} {h.note}")

    @agreement.command("status")
    @click.argument("agreement_id")
    @click.option("--at", "at_text", required=True, metavar="DATE",
                  help="ISO 8601 date or date-time (UTC).")
    @agreements_option
    @json_option
    def status_(agreement_id: str, at_text: str, agreement_dirs: tuple[str, ...],
                as_json: bool) -> None:
        """State of an agreement at a date: pending, in-force, notice-given, terminated."""
        at = instant(at_text)
        a = catalogue(agreement_dirs).get(agreement_id)
        st = status(a, at)
        if as_json:
            emit_json({"agreement": a.id, "at": at_text, **st.to_json()})
            return
        line = f"{a.id} on {at_text}: {st.state}"
        if st.terminates_on:
            line += f" (terminates on {st.terminates_on})"
        if st.notice_suspended:
            line += " (notice of termination suspended)"
        click.echo(line)

    @cli.command("classify")
    @click.option("--agreement", "agreement_id", required=True, help="Agreement id.")
    @click.option("--from", "from_party", required=True, metavar="PARTY")
    @click.option("--to", "to_party", required=True, metavar="PARTY")
    @click.option("--level", required=True, help="Level in the --from party's national scheme.")
    @agreements_option
    @json_option
    def classify(agreement_id: str, from_party: str, to_party: str, level: str,
                 agreement_dirs: tuple[str, ...], as_json: bool) -> None:
        """The --to party's level equivalent to --level under the agreement (exit 3 if none)."""
        cat = catalogue(agreement_dirs)
        a = cat.get(agreement_id)
        for flag, p in (("--from", from_party), ("--to", to_party)):
            party(p, where=flag)
            if p not in a.parties:
                raise MalformedInput(f"{p} is not a party to {a.id}", where=flag,
                                     expected="one of " + ", ".join(sorted(a.parties)))
        scheme = cat.schemes.get(from_party)
        if scheme is None:
            raise MalformedInput(f"no classification scheme for {from_party}", where="--from")
        english = scheme.level(level, where="--level").english
        equivalent = a.equivalent(from_party, level, to_party)
        if as_json:
            emit_json({"agreement": a.id, "from": from_party, "to": to_party, "level": level,
                       "equivalent": equivalent, "english": english})
        else:
            click.echo(equivalent)

    @cli.command("label")
    @click.option("--party", "party_code", metavar="P",
                  help="The originator (default: the party whose scheme has --level, if one "
                       "alone has it).")
    @label_options
    @agreements_option
    @json_option
    def label(party_code: str | None, level: str, rel_to: str, purpose: str,
              caveats: tuple[str, ...], category: str | None, policy: str | None,
              agreement_dirs: tuple[str, ...], as_json: bool) -> None:
        """The gsomia label marking-definition (STIX 2.1) for a label, every value checked.

        With --json, the marking-definition itself, to post over TAXII in its own envelope
        or with the objects that reference it; its id depends on the label alone, so the
        same label always prints the same object.
        """
        from gsomia.core.stix import printed_marking
        from gsomia.service import handlers

        cat = catalogue(agreement_dirs)
        if party_code is None:
            having = sorted(p for p, sc in cat.schemes.items() if sc.has(level))
            if len(having) != 1:
                raise MalformedInput(
                    f"{level!r} is a level of {', '.join(having) or 'no scheme'}",
                    where="--party", expected="--party naming the originator, one of "
                                              + ", ".join(sorted(cat.schemes)))
            party_code = having[0]
        request = handlers.LabelRequest(level, tuple(split_values((rel_to,))), purpose,
                                        frozenset(split_values(caveats)), policy, category)
        # A label's values, not when it was bound: the marking's id depends on them alone.
        made = replace(handlers.make_label(
            request, originator=cat.vocabulary.party(party_code, where="--party"),
            catalogue=cat, now=datetime.now(UTC)), created=None)
        english = made.english_marking(cat.schemes)
        marking = printed_marking(made, english)
        if as_json:
            emit_json(marking)
            return
        click.echo(f"{english}  ({made.national_marking()})")
        click.echo(marking["id"])

    @cli.command("release-check")
    @click.option("--json", "source", required=True, metavar="FILE|-",
                  help="The release request (DESIGN.md shape), or - for standard input.")
    @agreements_option
    def release_check(source: str, agreement_dirs: tuple[str, ...]) -> None:
        """Decide one release request; prints the decision as JSON (exit 0 permit, 1 deny)."""
        cat = catalogue(agreement_dirs)
        request = ReleaseRequest.from_json(read_json_input(source, what="a release request"),
                                           cat)
        decision = handlers.check_release(request, cat)
        emit_json(decision.to_json())
        if not decision.permit:
            raise click.exceptions.Exit(1)
