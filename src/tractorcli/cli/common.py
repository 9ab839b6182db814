"""What every tractorcli program shares: the runner, the context, the options.

* `Context`: the settings (loaded on first use), a lazy database connection,
  and output helpers: data to stdout, messages to stderr, rich consoles
  created only when a command renders a table.
* Options common to all programs are defined once here and applied with
  decorators (`site_options`, `output_options`).
* `make_main` wraps a click command into a console-script entry point with
  the one error -> message + exit status mapping.  Tracebacks appear only
  with `--debug` (or TRACTOR_DEBUG=1).

This module imports click only: `--help` must stay cheap.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Callable

import click

from ..errors import ExitStatus, TractorError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from ..config import SiteSettings

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Context:
    """Per-invocation state, reached from commands as `click.get_current_context().obj`."""

    def __init__(self, prog: str):
        self.prog = prog
        self.configdir: str | None = None
        self.quiet = False
        self.verbose = False
        self.debug = bool(os.environ.get("TRACTOR_DEBUG"))
        self._settings: SiteSettings | None = None
        self._conn = None
        self._out: Console | None = None
        self._err: Console | None = None

    # -- settings and database -------------------------------------------------

    @property
    def settings(self) -> "SiteSettings":
        if self._settings is None:
            from ..config import load_settings

            # the programs that run a site (dbctl, the engine) never join another's
            self._settings = load_settings(self.configdir,
                                           join_host_site=self.prog not in ("tractor-dbctl", "tractor-engine"))
        return self._settings

    def connection(self):
        """A lazily opened autocommit connection to the job database."""
        if self._conn is None:
            from ..db.connection import ADMIN, CLIENT, connect

            # tq's and tractor-spool's short sessions may go through the site's pooler; the
            # site's own programs (dbctl, the engine) go straight to the server
            purpose = CLIENT if self.prog in ("tq", "tractor-spool") else ADMIN
            self._conn = connect(self.settings, autocommit=True, purpose=purpose)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # -- output ------------------------------------------------------------------

    @property
    def console(self) -> "Console":
        """A rich console on stdout (for tables); created on first use."""
        if self._out is None:
            from rich.console import Console

            self._out = Console(highlight=False, soft_wrap=True)
        return self._out

    @property
    def err_console(self) -> "Console":
        if self._err is None:
            from rich.console import Console

            self._err = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._err

    def out(self, text: str = "") -> None:
        """Data: to stdout, always."""
        click.echo(text)

    def info(self, text: str) -> None:
        """A progress or result message: to stderr, unless --quiet."""
        if not self.quiet:
            click.echo(text, err=True)

    def detail(self, text: str) -> None:
        """Extra information shown with --verbose."""
        if self.verbose and not self.quiet:
            click.echo(text, err=True)


def get_context() -> Context:
    return click.get_current_context().find_object(Context)


# --- options defined once -------------------------------------------------------


def _set_attr(name: str) -> Callable:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        obj = ctx.ensure_object(Context)
        if value is not None and value is not False:
            setattr(obj, name, value)
        return value

    return callback


def configdir_option(f: Callable) -> Callable:
    return click.option(
        "--configdir", "--config-dir", "configdir", metavar="DIR", expose_value=False, is_eager=True,
        type=click.Path(file_okay=False),
        callback=_set_attr("configdir"),
        help="Site configuration directory (else $TRACTOR_CONFIGDIR, else ~/.config/tractor).",
    )(f)


def quiet_option(f: Callable) -> Callable:
    return click.option("-q", "--quiet", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_attr("quiet"), help="Print no status messages, only data and errors.")(f)


def verbose_option(f: Callable) -> Callable:
    return click.option("-v", "--verbose", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_attr("verbose"), help="Print more about what is being done.")(f)


def debug_option(f: Callable) -> Callable:
    return click.option("-d", "--debug", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_attr("debug"), help="Show full tracebacks of errors (also TRACTOR_DEBUG=1).")(f)


def version_option(prog: str) -> Callable:
    from .. import __version__

    return click.version_option(__version__, "--version", prog_name=prog, message="%(prog)s %(version)s")


def site_options(f: Callable) -> Callable:
    """--configdir, -q, -v, -d: every program that works on a site has these."""
    for deco in (debug_option, verbose_option, quiet_option, configdir_option):
        f = deco(f)
    return f


# --- the runner -----------------------------------------------------------------


def error_line(prog: str, exc: TractorError) -> str:
    text = f"{prog}: {exc.message}"
    if exc.hint:
        text += f"; {exc.hint}"
    return text.replace("\n", " ")


def make_main(command: click.Command, prog: str, *, fast_exit: bool = False) -> Callable[..., int]:
    """A console-script entry point running `command` with our error handling.

    With `fast_exit`, the program (run from its console script, not called
    with `argv`) ends with os._exit once its output is flushed and its
    connections are closed: tractor-spool holds a whole job in memory, and
    freeing a million-task job object by object at interpreter exit takes
    longer than the spool's commit.
    """

    def main(argv: list[str] | None = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        obj = Context(prog)
        status = _run(command, prog, args, obj)
        obj.close()
        if argv is None:
            if fast_exit:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os._exit(int(status))
            sys.exit(int(status))
        return int(status)

    main.__doc__ = f"Entry point of {prog}."
    return main


def _run(command: click.Command, prog: str, args: list[str], obj: Context) -> ExitStatus:
    debug = obj.debug or "--debug" in args
    try:
        rv = command.main(args=args, prog_name=prog, standalone_mode=False, obj=obj)
        if isinstance(rv, int):
            return ExitStatus(rv)
        return ExitStatus.OK
    except click.exceptions.Exit as exc:
        return ExitStatus(exc.exit_code)
    except click.UsageError as exc:
        # one line, naming the option, instead of click's usage block
        click.echo(f"{prog}: {exc.format_message()} (see {prog} --help)", err=True)
        return ExitStatus.USAGE
    except click.Abort:
        click.echo(f"{prog}: interrupted", err=True)
        return ExitStatus.INTERRUPTED
    except KeyboardInterrupt:
        click.echo(f"{prog}: interrupted", err=True)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return ExitStatus.OK
    except TractorError as exc:
        if debug or obj.debug:
            import traceback

            traceback.print_exc()
        click.echo(error_line(prog, exc), err=True)
        return exc.status
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        translated = _translate_foreign(exc)
        if debug or obj.debug:
            import traceback

            traceback.print_exc()
        if translated is not None:
            click.echo(error_line(prog, translated), err=True)
            return translated.status
        click.echo(f"{prog}: internal error: {exc.__class__.__name__}: {exc} (run with --debug for details)", err=True)
        return ExitStatus.ERROR


def _translate_foreign(exc: Exception) -> TractorError | None:
    """Errors from libraries that escaped the core: classify them anyway."""
    if "psycopg" in sys.modules:
        import psycopg

        if isinstance(exc, psycopg.Error):
            from ..db.connection import translate

            return translate(exc)
    if isinstance(exc, OSError):
        from ..errors import from_os_error

        return from_os_error(exc, "an operation")
    return None
