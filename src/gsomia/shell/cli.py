"""The ``gsomia`` command line: parse, call the service or core, print, pick the exit code.

Exit codes: 0 success; 1 a check that ran and failed (e.g. a tampered audit log);
2 bad input (one line on stderr, no traceback); 3 a level with no equivalent.

Errors name the field they are about as the service knows it (``rel_to``); this is where the
field becomes the flag a user types (``--rel-to``), through :data:`FIELD_FLAGS`.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module

import click

from gsomia.core.errors import GsomiaError, MalformedInput, NoEquivalent

# Each module under gsomia.shell.commands exposes ``register(cli)``.
COMMAND_MODULES = (
    "gsomia.shell.commands.agreements",
    "gsomia.shell.commands.node",
    "gsomia.shell.commands.serve",
    "gsomia.shell.commands.demo",
    "gsomia.shell.commands.tracking",
    "gsomia.shell.commands.scenario",
    "gsomia.shell.commands.track",
    "gsomia.shell.commands.federation",
    "gsomia.shell.commands.report",
    "gsomia.shell.commands.doctor",
    "gsomia.shell.commands.notices",
    "gsomia.shell.commands.warnings",
    "gsomia.shell.commands.sensors",
)


# The flag through which a user gives each field that errors name. Any other ``where`` (a
# file, a path into a document, a field no flag sets) is printed as it is.
FIELD_FLAGS = {
    "against": "--against",
    "agreements": "--agreements",
    "caveats": "--caveat",
    "category": "--category",
    "clearance": "--clearance",
    "consent_id": "--id",
    "db": "--db",
    "event_seq": "--event",
    "folder": "--dir",
    "index": "--index",
    "item": "--item",
    "launch": "--launch",
    "name": "--name",
    "need_to_know": "--need-to-know",
    "level": "--level",
    "node": "--node",
    "not_after": "--until",
    "party": "--party",
    "policy": "--policy",
    "purpose": "--purpose",
    "regime": "--regime",
    "rel_to": "--rel-to",
    "request": "--request",
    "role": "--role",
    "to": "--to",
}


def flag_of(field: str) -> str:
    """The command-line flag for ``field`` (the field itself when no flag sets it)."""
    return FIELD_FLAGS.get(field, field)


# Which modules register each top-level command, in COMMAND_MODULES order (a group such as
# ``node`` gathers commands from several). A command's modules are imported only when it is
# run: every command imported costs each run about 1 s of CPU (NumPy, SciPy, SQLAlchemy,
# the tracker), and the tests run the command line hundreds of times.
# tests/e2e/test_cli_output.py checks this table against what the modules register.
COMMANDS: dict[str, tuple[str, ...]] = {
    "agreement": ("agreements",), "classify": ("agreements",), "label": ("agreements",),
    "release-check": ("agreements",),
    "audit": ("node", "notices"), "item": ("node", "notices"), "items": ("node",),
    "node": ("node", "serve", "federation"), "publish": ("node",), "user": ("node",),
    "demo": ("demo",), "launches": ("tracking",), "trajectory": ("tracking",),
    "evaluate": ("scenario",), "scenario": ("scenario",), "track": ("track",),
    "consent": ("federation",), "federation": ("federation",),
    "replay": ("report",), "report": ("report",), "doctor": ("doctor",),
    "incident": ("notices",), "warnings": ("warnings",), "sensors": ("sensors",),
}


class LazyCommands(click.Group):
    """The top-level group: lists every command, imports a command's modules when it is
    asked for (a run, or --help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            # Registered into a group of their own, so that a module registering other
            # commands too (``federation`` adds ``node run``) leaves this group's alone.
            scratch = click.Group()
            for module in COMMANDS[cmd_name]:
                import_module(f"gsomia.shell.commands.{module}").register(scratch)
            self.add_command(scratch.commands[cmd_name], cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=LazyCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gsomia")
def cli() -> None:
    """gsomia: release classified military information only as the agreements in force allow."""


def usage_error_line(exc: click.ClickException) -> str:
    """A usage error as one line, like the project's own errors: click's message (its lists
    of choices folded onto the line) and where the command's help is."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "gsomia"
    return f"error: {message.rstrip('.')}; see '{command} --help'"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI, translating gsomia errors into one stderr line and an exit status."""
    if argv is None:  # the process's entry point, before any thread of ours: the one time
        # Every Python process this one starts runs with safe path (the working folder is
        # not on its module path): the signature worker spawned to replace a dead one, and
        # multiprocessing's resource tracker, run ``python -c`` (signatures.safe_to_spawn).
        os.environ.setdefault("PYTHONSAFEPATH", "1")
    try:
        # Without standalone mode click returns the code of ``ctx.exit(code)`` instead of exiting.
        code = cli.main(args=argv, prog_name="gsomia", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()   # a group named without its command: its help is the answer
        return 2
    except click.ClickException as exc:
        click.echo(usage_error_line(exc), err=True)
        return 2
    except NoEquivalent as exc:
        click.echo(f"error: {exc}", err=True)
        return 3
    except MalformedInput as exc:
        click.echo(f"error: {exc.describe(flag_of)}", err=True)
        return 2
    except GsomiaError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
