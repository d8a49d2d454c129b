"""``gsomia doctor``: check the environment and, optionally, a node folder; say what to fix
(the checks: :mod:`gsomia.shell.doctor`)."""

from __future__ import annotations

from pathlib import Path

import click

from gsomia import bootstrap
from gsomia.shell.commands.common import emit_json, progress
from gsomia.shell.doctor import MODULES, environment, node_checks


def register(cli: click.Group) -> None:
    @cli.command("doctor")
    @click.option("--node", "node_dir", type=click.Path(file_okay=False), default=None,
                  help="Also check this node folder.")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
    def doctor(node_dir: str | None, as_json: bool) -> None:
        """Check the environment (and a node folder): what works and what to fix."""
        # Importing every module and verifying a node's audit log takes seconds.
        total = len(MODULES) + (node_dir is not None)
        with progress("checking the environment", total, as_json=as_json) as steps:
            def importing(module: str) -> None:
                steps.update(description=f"importing {module}")
                steps.advance()

            checks = environment(bootstrap.catalogue, importing)
            if node_dir is not None:
                steps.update(description="verifying the node's audit log")
                checks += node_checks(Path(node_dir).resolve(), bootstrap.catalogue)
                steps.advance()
        failed = [c for c in checks if not c.ok and c.required]
        if as_json:
            emit_json({"ok": not failed, "checks": [c.to_json() for c in checks]})
        else:
            for c in checks:
                mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
                click.echo(f"[{mark}] {c.name}: {c.detail}")
                if not c.ok and c.fix:
                    click.echo(f"       fix: {c.fix}")
        if failed:
            raise click.exceptions.Exit(1)
