"""The web tool's commands: ``serve``, ``users``, ``import`` and ``ssap-import``.

Each takes ``--db URL``; without it the environment variable ``SPECTRALDL_DB``
names the database, else the SQLite file ``spectraldl.db`` in the working
directory. The database is created and migrated on first use.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from spectraldl.cli._options import FiniteFloatRange, db_option, stops_cleanly
from spectraldl.cli._progress import progress_bar

SHUTDOWN_GRACE_S = 5
"""Seconds a stopping server lets requests in progress finish before it closes them."""


@contextmanager
def _opened(db_url: str | None) -> Iterator[Any]:
    """The web database for one command, its connections closed when the command ends
    (a command run in-process, as tests and scripts do, leaves none open)."""
    from spectraldl.web.db import DatabaseError, open_database

    try:
        db = open_database(db_url)
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield db
    finally:
        db.dispose()


def _read_password(password_stdin: bool, *, confirm: bool = True) -> str:
    if password_stdin:
        text = sys.stdin.readline().rstrip("\r\n")
        if not text:
            raise click.ClickException("no password on standard input")
        return text
    return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)


def _print_errors(errors: list[Any], limit: int = 20) -> None:
    for error in errors[:limit]:
        click.echo(f"  bad: {error.path}: {error.reason}", err=True)
    if len(errors) > limit:
        click.echo(f"  ... and {len(errors) - limit} more bad files", err=True)


@click.command("serve")
@db_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@click.option(
    "--secure-cookies",
    is_flag=True,
    help="Mark cookies Secure (when users reach the app over HTTPS, e.g. behind a proxy).",
)
@click.option(
    "--forwarded-allow-ips",
    metavar="IPS",
    default=None,
    help="Trust X-Forwarded-For/-Proto from these proxy addresses (comma-separated, or '*'). "
    "Without it the headers are ignored and every client is its socket's address.",
)
@click.option(
    "--max-body-mb",
    type=FiniteFloatRange(0.01, 1024),
    default=2.0,
    show_default=True,
    help="Largest JSON or form body accepted (MiB).",
)
@click.option(
    "--max-upload-mb",
    type=FiniteFloatRange(0.01, 1024 * 64),
    default=512.0,
    show_default=True,
    help="Largest catalogue upload accepted from a logged-in user (MiB).",
)
@click.option(
    "--head-timeout",
    type=FiniteFloatRange(0.1, 3600),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a request's line and headers before its connection "
    "is closed (a client sending nothing, or a byte now and then, would otherwise hold it).",
)
@click.option(
    "--body-timeout",
    type=FiniteFloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds a client has to send a request's body (a catalogue upload: each part of it) "
    "before it is answered 408 and its connection closed.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve_command(
    db_url: str | None,
    host: str,
    port: int,
    secure_cookies: bool,
    forwarded_allow_ips: str | None,
    max_body_mb: float,
    max_upload_mb: float,
    head_timeout: float,
    body_timeout: float,
    log_level: str,
) -> None:
    """Run the web tool: label spectra and vet candidates in a browser.

    Open http://HOST:PORT/ and log in with an account made by
    `spectraldl users add NAME`. Everything works offline; several people can
    label at once (use PostgreSQL for a team on several machines).

    \b
    Example:
      spectraldl users add alice --admin --db sqlite:///web.db
      spectraldl serve --db sqlite:///web.db --port 8000
    """
    import uvicorn

    from spectraldl.web.app import create_app
    from spectraldl.web.connections import head_deadline_protocol
    from spectraldl.web.limits import BodyLimits

    limits = BodyLimits(
        body_bytes=int(max_body_mb * 1024 * 1024), upload_bytes=int(max_upload_mb * 1024 * 1024)
    )
    _check_port(host, port)
    with _opened(db_url) as db:
        _announce(db, host, port)
        app = create_app(
            db, secure_cookies=secure_cookies, limits=limits, body_timeout_s=body_timeout
        )
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=log_level == "debug",
            proxy_headers=forwarded_allow_ips is not None,
            forwarded_allow_ips=forwarded_allow_ips or "",
            http=head_deadline_protocol(head_timeout),
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )


def _check_port(host: str, port: int) -> None:
    """Refuse a port another program listens on before announcing the URL (binding as
    uvicorn does: SO_REUSEADDR, IPv6 for an address with a colon)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.ClickException(
                    f"port {port} is in use on {host}; pick another with --port"
                ) from None
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None


def _announce(db: Any, host: str, port: int) -> None:
    """Say where the server listens and what its database holds."""
    from sqlalchemy import func, select

    from spectraldl.web.models import SpectrumRow, User

    with db.session() as session:
        n_users = session.scalar(select(func.count(User.id))) or 0
        n_spectra = session.scalar(select(func.count(SpectrumRow.id))) or 0
    shown = db.engine.url.render_as_string(hide_password=True)
    click.echo(f"spectraldl web tool on http://{host}:{port}/ (database {shown}, ", nl=False)
    click.echo(f"{n_spectra} spectra, {n_users} users)")
    if not n_users:
        click.echo("No users yet: add one with `spectraldl users add NAME --admin`.", err=True)


@click.group("users")
def users_group() -> None:
    """Manage the web tool's users (also possible for admins in the web pages).

    \b
    Example:
      spectraldl users add alice --admin --db sqlite:///web.db
      spectraldl users list --db sqlite:///web.db
    """


@click.argument("name")
@click.option("--admin", is_flag=True, help="May manage users.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
@db_option()
def _users_add(name: str, admin: bool, password_stdin: bool, db_url: str | None) -> None:
    """Add the user NAME (asks for the password unless --password-stdin).

    \b
    Example:
      spectraldl users add alice --admin --db sqlite:///web.db
    """
    from spectraldl.web.auth import UserError, add_user, check_user_name

    try:
        check_user_name(name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    password = _read_password(password_stdin)
    with _opened(db_url) as db, db.session() as session:
        try:
            add_user(session, name, password, admin=admin)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
    click.echo(f"user {name!r} added{' (admin)' if admin else ''}")


@db_option()
def _users_list(db_url: str | None) -> None:
    """List the users.

    \b
    Example:
      spectraldl users list --db sqlite:///web.db
    """
    from sqlalchemy import select

    from spectraldl.web.models import User

    with _opened(db_url) as db, db.session() as session:
        for user in session.scalars(select(User).order_by(User.id)):
            flags = [
                f for f, on in (("admin", user.is_admin), ("inactive", not user.is_active)) if on
            ]
            click.echo(f"{user.name}{'  (' + ', '.join(flags) + ')' if flags else ''}")


@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@db_option()
def _users_passwd(name: str, password_stdin: bool, db_url: str | None) -> None:
    """Set a new password for NAME (ends their sessions).

    \b
    Example:
      spectraldl users passwd alice --db sqlite:///web.db
    """
    from sqlalchemy import select

    from spectraldl.web.auth import UserError, set_password
    from spectraldl.web.models import User

    with _opened(db_url) as db, db.session() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise click.ClickException(f"no user named {name!r}")
        try:
            set_password(session, user, _read_password(password_stdin))
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
    click.echo(f"password of {name!r} changed")


# Registered on the group, never bound to a module name as commands, so that the command
# discovery of spectraldl.cli sees only the group as a top-level command.
for _name, _callback in (("add", _users_add), ("list", _users_list), ("passwd", _users_passwd)):
    users_group.command(_name)(_callback)


@click.command("import")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@db_option()
@click.option(
    "--origin",
    type=click.Choice(["real", "synthetic"]),
    default="real",
    show_default=True,
    help="Recorded with each spectrum read from FITS (files spectraldl simulate wrote are "
    "always synthetic; a predictions file's candidates keep its origin column).",
)
@click.option(
    "--fetch-sources/--no-fetch-sources",
    default=True,
    show_default=True,
    help="For a predictions file: also import the candidates' spectra from their source files.",
)
@click.option(
    "--min-probability",
    type=FiniteFloatRange(0.0, 1.0),
    help="For a predictions file: keep rows whose predicted class has at least this probability.",
)
@click.option(
    "--classes",
    "classes_",
    metavar="NAMES",
    help="For a predictions file: keep rows predicted as these classes (comma-separated).",
)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Score every stored spectrum with this model (feeds the 'most uncertain first' queue).",
)
@stops_cleanly("the spectra imported so far are kept: run the same command to finish")
def import_command(
    paths: tuple[Path, ...],
    db_url: str | None,
    origin: str,
    fetch_sources: bool,
    min_probability: float | None,
    classes_: str | None,
    model_dir: Path | None,
) -> None:
    """Import spectra and predictions into the web tool's database.

    PATHS are FITS files or directory trees (whole spectra: wavelengths, flux
    and the 140-point vector), spectraldl datasets (.h5, which keep only the
    140-point vectors), and predictions files or catalogues (.parquet, .csv,
    .fits tables, .vot) to vet. Ids already in the database are skipped, so
    an interrupted import is finished by running it again; bad files are
    listed and skipped.

    \b
    Example:
      spectraldl import ondrejov/ dr1.parquet --min-probability 0.9 --db sqlite:///web.db
    """
    if not paths and model_dir is None:
        raise click.UsageError("give PATHS to import, or --model to score the stored spectra")
    from spectraldl.io.dataset import DatasetError
    from spectraldl.io.labels import label_code
    from spectraldl.web.importing import ImportFailed, ImportSummary, import_paths

    classes = [c.strip() for c in classes_.split(",") if c.strip()] if classes_ else None
    for name in classes or ():
        try:
            label_code(name)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--classes") from None
    summary = ImportSummary()
    with _opened(db_url) as db:
        if paths:
            try:
                with progress_bar("import") as update:
                    summary = import_paths(
                        db,
                        paths,
                        origin=origin,
                        fetch_sources=fetch_sources,
                        min_probability=min_probability,
                        classes=classes,
                        progress=update,
                    )
            except (FileNotFoundError, ImportFailed, DatasetError) as exc:
                raise click.ClickException(str(exc)) from None
        if model_dir is not None:
            from spectraldl.ml.modelcard import ModelDirError, ModelMismatch
            from spectraldl.web.importing import score_with_model

            try:
                summary.merge(score_with_model(db, model_dir))
            except (ModelDirError, ModelMismatch) as exc:
                raise click.ClickException(str(exc)) from None
    _print_errors(summary.errors)
    click.echo(summary.line())


def _pair(text: str | None, what: str) -> tuple[float, float] | None:
    """Two finite numbers separated by ',' or '/' (``--pos``, ``--band``), or None."""
    if text is None:
        return None
    parts = text.replace("/", ",").split(",")
    try:
        first, second = (float(p) for p in parts)
    except ValueError:
        raise click.BadParameter("must be two numbers, e.g. 10.5,41.2", param_hint=what) from None
    if not (math.isfinite(first) and math.isfinite(second)):
        raise click.BadParameter(f"{text!r} is not two finite numbers", param_hint=what)
    return first, second


def _position(text: str | None) -> tuple[float, float] | None:
    """``--pos RA,DEC`` in degrees: RA in [0, 360), Dec in [-90, 90]."""
    pos = _pair(text, "--pos")
    if pos is not None and not (0 <= pos[0] < 360 and -90 <= pos[1] <= 90):
        raise click.BadParameter(
            f"{text!r}: RA must be in [0, 360) and Dec in [-90, 90]", param_hint="--pos"
        )
    return pos


def _band(text: str | None) -> tuple[float, float] | None:
    """``--band MIN,MAX`` in Å: 0 <= MIN < MAX."""
    band = _pair(text, "--band")
    if band is not None and not 0 <= band[0] < band[1]:
        raise click.BadParameter(
            f"{text!r}: must be MIN,MAX in Å, 0 <= MIN < MAX", param_hint="--band"
        )
    return band


@click.command("ssap-import")
@click.argument("service_url")
@db_option()
@click.option("--pos", metavar="RA,DEC", help="Position in degrees (ICRS).")
@click.option(
    "--size",
    "size_deg",
    type=FiniteFloatRange(0.0, 360.0, min_open=True),
    metavar="DEG",
    help="Search diameter in degrees.",
)
@click.option("--target", help="Target name (SSAP TARGETNAME).")
@click.option("--band", metavar="MIN,MAX", help="Wavelength range in Å that spectra must overlap.")
@click.option("--time", "time_range", metavar="START/END", help="ISO observation time range.")
@click.option("--format", "format_", help="SSAP FORMAT (e.g. fits, application/fits).")
@click.option(
    "--limit", type=click.IntRange(min=1), help="At most this many spectra (SSAP MAXREC)."
)
@click.option(
    "--download-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ssap-downloads"),
    show_default=True,
    help="Where the FITS files are kept (reused by a rerun).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=FiniteFloatRange(0.0, 86400.0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the service's answer and for each download.",
)
@stops_cleanly(
    "the downloads and the spectra imported so far are kept: run the same command to finish"
)
def ssap_import_command(
    service_url: str,
    db_url: str | None,
    pos: str | None,
    size_deg: float | None,
    target: str | None,
    band: str | None,
    time_range: str | None,
    format_: str | None,
    limit: int | None,
    download_dir: Path,
    timeout_s: float,
) -> None:
    """Query an SSAP service (e.g. the Ondřejov archive), download and import its spectra.

    SERVICE_URL is the service's SSAP endpoint; the Ondřejov CCD700 archive's
    (a DaCHS service at voarchive.asu.cas.cz) is in the IVOA registry. Spectra
    already in the database are not downloaded again, files already downloaded
    are reused: rerun the same command to finish an interrupted import.

    \b
    Example:
      spectraldl ssap-import http://voarchive.asu.cas.cz/ccd700/q/ssa/ssap.xml --target "gamma Cas"
    """
    from spectraldl.core.errors import describe_os_error
    from spectraldl.io.archives.ssap import DownloadFolderUnusable, SsapError
    from spectraldl.web.importing import import_ssap

    pos_pair, band_pair = _position(pos), _band(band)
    time_pair = None
    if time_range is not None:
        start, _, stop = time_range.partition("/")
        if not stop:
            raise click.BadParameter("--time must be START/END in ISO format")
        time_pair = (start, stop)
    try:
        with _opened(db_url) as db, progress_bar("ssap-import") as update:
            summary = import_ssap(
                db,
                service_url,
                download_dir=download_dir,
                pos=pos_pair,
                size_deg=size_deg,
                target=target,
                band_aa=band_pair,
                time=time_pair,
                format=format_,
                limit=limit,
                timeout_s=timeout_s,
                progress=update,
            )
    except SsapError as exc:
        raise click.ClickException(str(exc)) from None
    except DownloadFolderUnusable as exc:
        kept = "the spectra stored so far are kept"
        raise click.ClickException(describe_os_error(exc.error, download_dir, kept=kept)) from None
    _print_errors(summary.errors)
    click.echo(summary.line())
