"""The `deskbell` command: release, bootstrap, doctor, dead, export, import, backup, restore, bundle, dev.

docs/operations.md shows each in use."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from desk import settings
from desk.settings import ROOT

if TYPE_CHECKING:
    from nats.js import JetStreamContext

T = TypeVar("T")

DEMO = {
    "slug": "demo",
    "name": "Demo Company",
    "owner_email": "owner@demo.deskbell.local",
    "site_name": "Demo site",
}


@click.group()
def main() -> None:
    """Deskbell: self-hosted live chat."""


async def _ensure_streams(url: str) -> None:
    from desk import bus, subjects

    nc = await bus.connect(url, "release")
    try:
        await subjects.ensure_streams(nc.jetstream())
    finally:
        await nc.close()


@main.command()
def release() -> None:
    """Run database migrations and create the JetStream streams and consumers (idempotent)."""
    from desk import migrate

    config = settings.load()
    if not config.database_url or not config.nats_url:
        raise click.ClickException("DATABASE_URL and NATS_URL must be set (or use `deskbell dev`)")
    migrate.upgrade(config.database_url)
    asyncio.run(_ensure_streams(config.nats_url))
    click.echo("release: database migrated, streams ready", err=True)


@main.command()
@click.option("--slug", default=DEMO["slug"], show_default=True, help="Tenant's short name.")
@click.option("--name", default=DEMO["name"], show_default=True, help="Tenant's display name.")
@click.option("--owner-email", default=DEMO["owner_email"], show_default=True)
@click.option("--site-name", default=DEMO["site_name"], show_default=True)
@click.option("--origin", "origins", multiple=True, help="Allowed browser origin for the widget (repeatable).")
@click.option("--agent", "agents", multiple=True, help="Also create an agent with this email (repeatable).")
@click.option("--welcome", "welcomes", multiple=True, metavar="LANG=TEXT", help="Widget welcome text, en or zh.")
@click.option("--color", default=None, metavar="#RRGGBB", help="Widget colour.")
@click.option("--position", type=click.Choice(["right", "left"]), default=None, help="Widget corner.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")
def bootstrap(
    slug: str,
    name: str,
    owner_email: str,
    site_name: str,
    origins: tuple[str, ...],
    agents: tuple[str, ...],
    welcomes: tuple[str, ...],
    color: str | None,
    position: str | None,
    as_json: bool,
) -> None:
    """Create a tenant with a site and an owner, without prompts; safe to run again (widget options then update)."""
    import secrets

    from desk import widget_settings

    if bad := [w for w in welcomes if "=" not in w]:
        raise click.BadParameter(f"expected LANG=TEXT, got {bad[0]!r}", param_hint="--welcome")
    try:
        widget = widget_settings.parse(dict(w.split("=", 1) for w in welcomes), color, position)
    except widget_settings.InvalidSetting as exc:
        raise click.UsageError(str(exc)) from exc

    from sqlalchemy import select

    from desk.actions.tenants import do_bootstrap_tenant, do_create_user
    from desk.db import system_session, tenant_session
    from desk.models import Tenant, User

    with system_session() as session:  # emails are unique across tenants: one login page for all
        owner_tenant = session.scalar(select(User.tenant_id).where(User.email == owner_email.lower()))
        existing = session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    if owner_tenant is not None and owner_tenant != existing:
        raise click.ClickException(f"email already used by another tenant: {owner_email.lower()} (--owner-email)")
    with system_session() as session:
        result = do_bootstrap_tenant(
            session,
            slug=slug,
            name=name,
            owner_email=owner_email,
            site_name=site_name,
            allowed_origins=list(origins),
            widget=widget,
        )
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    created_agents = []
    with system_session() as session:  # emails are unique across tenants: one login page for all
        wanted = [a.lower() for a in agents]
        taken = {u.email: u.tenant_id for u in session.scalars(select(User).where(User.email.in_(wanted)))}
    if clash := sorted(email for email, owner in taken.items() if owner != tenant_id):
        raise click.ClickException(f"email already used by another tenant: {', '.join(clash)}")
    with tenant_session(tenant_id) as session:
        for email in agents:
            if email.lower() not in taken:
                password = secrets.token_urlsafe(12)
                do_create_user(session, email=email, name=email.split("@")[0].title(), role="agent", password=password)
                created_agents.append({"email": email.lower(), "password": password})
    out = {
        "tenant": result.tenant_slug,
        "site_key": result.site_key,
        "owner_email": result.owner_email,
        "owner_password": result.owner_password,
        "created": result.created,
        "agents": created_agents,
    }
    if as_json:
        click.echo(json.dumps(out))
    elif result.created:
        click.echo(f"Tenant {slug}: owner {result.owner_email} / {result.owner_password}; site key {result.site_key}")
    else:
        click.echo(f"Tenant {slug} already exists (site key {result.site_key}); passwords are shown only once.")


PREVIEW_CHARS = 80
NATS_CONNECT_SECONDS = 10.0


@main.group()
def dead() -> None:
    """Dead letters: messages a worker gave up on, kept in the stream DESK_DEAD."""


def _with_dead_letters(work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run `work(js)` against NATS_URL's JetStream, once DESK_DEAD is known to be there."""
    import nats.js.errors

    from desk import bus, subjects

    url = settings.load().nats_url
    if not url:
        raise click.ClickException("NATS_URL must be set")

    async def session() -> T:
        try:
            nc = await asyncio.wait_for(bus.connect(url, "deskbell-dead"), NATS_CONNECT_SECONDS)
        except TimeoutError as exc:
            raise click.ClickException(f"cannot reach NATS at {url}") from exc
        try:
            js = nc.jetstream()
            try:
                await js.stream_info(subjects.DEAD_STREAM)
            except nats.js.errors.NotFoundError as exc:
                raise click.ClickException(f"no stream {subjects.DEAD_STREAM}: run `deskbell release`") from exc
            return await work(js)
        finally:
            await nc.close()

    return asyncio.run(session())


async def _dead_letters(js: JetStreamContext) -> list[dict[str, Any]]:
    """Every dead letter, oldest first, as `deskbell dead list --json` prints it."""
    import nats.js.errors

    from desk import subjects

    state = (await js.stream_info(subjects.DEAD_STREAM)).state
    letters: list[dict[str, Any]] = []
    seq = state.first_seq
    while state.messages and seq <= state.last_seq:
        try:
            msg = await js.get_msg(subjects.DEAD_STREAM, seq=seq, subject=subjects.dead_letter(">"), next=True)
        except nats.js.errors.NotFoundError:
            break
        headers = msg.headers or {}
        letters.append(
            {
                "seq": msg.seq,
                "subject": headers.get(subjects.DEAD_SUBJECT),
                "stream": headers.get(subjects.DEAD_STREAM_NAME),
                "consumer": headers.get(subjects.DEAD_CONSUMER),
                "error": headers.get(subjects.DEAD_ERROR),
                "deliveries": int(headers.get(subjects.DEAD_DELIVERIES, 0)),
                "time": msg.time.isoformat() if msg.time else None,
                "preview": (msg.data or b"")[: PREVIEW_CHARS * 4].decode(errors="replace")[:PREVIEW_CHARS],
            }
        )
        seq = msg.seq + 1
    return letters


@dead.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the dead letters as one JSON array.")
def dead_list(as_json: bool) -> None:
    """Show the dead letters: where each came from, why it failed, and the start of its payload."""
    letters = _with_dead_letters(_dead_letters)
    if as_json:
        click.echo(json.dumps(letters))
        return
    for letter in letters:
        click.echo(f"{letter['seq']}  {letter['time']}  {letter['consumer']}  {letter['subject']}")
        click.echo(f"    {letter['deliveries']} deliveries, {letter['error']}")
        click.echo(f"    {letter['preview']!r}")
    click.echo(f"{len(letters)} dead letter(s)", err=True)


@dead.command("replay")
@click.argument("seqs", nargs=-1, type=click.IntRange(min=1))
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
def dead_replay(seqs: tuple[int, ...], replay_all: bool) -> None:
    """Publish dead letters SEQS again to their original subjects, then delete them from DESK_DEAD."""
    import uuid

    import nats.js.errors

    from desk import bus, subjects

    if bool(seqs) == replay_all:
        raise click.UsageError("give the dead letters' SEQ numbers, or --all")

    async def replay(js: JetStreamContext) -> None:
        wanted = [letter["seq"] for letter in await _dead_letters(js)] if replay_all else list(seqs)
        for seq in wanted:
            try:
                msg = await js.get_msg(subjects.DEAD_STREAM, seq=seq)
            except nats.js.errors.NotFoundError as exc:
                raise click.ClickException(f"no dead letter {seq}") from exc
            own = ("Nats-", subjects.DEAD_HEADER_PREFIX)
            headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith(own)}
            # A fresh id, or JetStream drops a replay within its duplicate window as the message it already has.
            headers["Nats-Msg-Id"] = f"replay:{uuid.uuid4()}"
            subject = msg.headers[subjects.DEAD_SUBJECT]
            await js.publish(subject, msg.data or b"", headers=headers, timeout=bus.PUBLISH_TIMEOUT)
            await js.delete_msg(subjects.DEAD_STREAM, seq)
            click.echo(f"{seq}: replayed to {subject}")

    _with_dead_letters(replay)


@main.command()
@click.option("--public-url", default=None, help="Where browsers reach Deskbell (default: $PUBLIC_URL).")
@click.option("--no-edge", is_flag=True, help="Skip the check through the public URL (no web process yet).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def doctor(public_url: str | None, no_edge: bool, as_json: bool) -> None:
    """Check configuration, database, NATS, the public URL, disk and clock; exit 1 if anything fails."""
    from desk import doctor as checks

    results = checks.run_all(public_url, edge=not no_edge)
    click.echo(checks.report(results, as_json))
    if not all(c.ok for c in results):
        sys.exit(1)


@main.command("mail")
def mail_command() -> None:
    """Is email getting out? Sent, failed and waiting emails, the last error; exit 1 while emails keep failing."""
    from desk import mail_health

    result = mail_health.check()
    click.echo(result.line())
    if not result.ok:
        sys.exit(1)


# -- export, import, backup, restore (desk/archive/; docs/operations.md, "Export, import, backup") -----------------


class _Bar:
    """desk.archive's Progress as a click progress bar on stderr; nothing with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def start(self, label: str, total: int) -> None:
        if not self.quiet:
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)
            self.bar.__enter__()

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _database_url() -> str:
    url = settings.load().database_url
    if not url:
        raise click.ClickException("DATABASE_URL must be set")
    return url


def _day(value: Any, end: bool) -> Any:
    """A --since/--until day as a UTC instant: the start of --since's day, the end of --until's (inclusive)."""
    from datetime import UTC, timedelta

    if value is None:
        return None
    return value.replace(tzinfo=UTC) + (timedelta(days=1) if end else timedelta())


@main.command("export")
@click.option("--tenant", "slug", required=True, help="The tenant's slug.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The .tar.gz to write.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Conversations from this day (UTC).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), default=None, help="...to this day, inclusive (UTC).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def export_command(slug: str, out: Path, since: Any, until: Any, quiet: bool) -> None:
    """Write one tenant's data and files to one archive, with counts and checksums in its manifest."""
    from desk.archive import ArchiveError
    from desk.archive.export import export_tenant

    if since and until and since > until:
        raise click.BadParameter(f"{since:%Y-%m-%d} is after --until {until:%Y-%m-%d}", param_hint="--since")
    try:
        manifest = export_tenant(
            _database_url(),
            slug,
            out,
            settings.load().data_dir,
            since=_day(since, end=False),
            until=_day(until, end=True),
            progress=_Bar(quiet),
        )
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    rows = sum(t["rows"] for t in manifest["tables"])
    click.echo(
        f"export: {slug}: {rows} rows in {len(manifest['tables'])} tables, {len(manifest['files'])} files -> {out}",
        err=True,
    )


@main.command("import")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--slug", default=None, help="Give the tenant this slug here (its own is another tenant's).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def import_command(archive: Path, slug: str | None, quiet: bool) -> None:
    """Import a tenant's archive: checked first, all or nothing, and safe to run twice."""
    from desk.archive import ArchiveError
    from desk.archive.importer import ImportMismatch, import_tenant

    try:
        result = import_tenant(_database_url(), archive, settings.load().data_dir, slug=slug, progress=_Bar(quiet))
    except ImportMismatch as exc:
        _print_import(exc.result)
        raise click.ClickException(str(exc)) from None
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    _print_import(result)
    from desk import crypto

    ring = crypto.keyring()
    if ring.on:  # the archive holds plain text (an export decrypts): encrypt what was just written
        from desk.db import system_session

        with system_session() as session:
            crypto.rotate(session, ring, _Bar(quiet), tenant_id=result.tenant_id)
    inserted = sum(t.inserted for t in result.tables)
    click.echo(
        f"import: tenant {result.slug} ({result.tenant_id}): {inserted} rows added, "
        f"{result.files_copied} of {result.files} files copied; every row verified"
    )


def _print_import(result: Any) -> None:
    click.echo(f"{'table':<22}{'archive':>9}{'added':>9}{'present':>9}{'new ids':>9}{'verified':>9}")
    for t in result.tables:
        click.echo(f"{t.name:<22}{t.archived:>9}{t.inserted:>9}{t.present:>9}{t.renumbered:>9}{t.verified:>9}")


@main.command("backup")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="A new folder.")
def backup_command(out: Path) -> None:
    """Back up the installation: pg_dump of the database, the data folder, a manifest with checksums."""
    from desk.archive import ArchiveError
    from desk.archive.backup import backup

    try:
        manifest = backup(_database_url(), settings.load().data_dir, out, log=lambda m: click.echo(m, err=True))
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    rows = sum(manifest["tables"].values())
    click.echo(f"backup: {rows} rows, {len(manifest['files'])} files -> {out}", err=True)


@main.command("restore")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
def restore_command(source: Path) -> None:
    """Restore a backup into an empty database (DATABASE_URL) and the data folder."""
    from desk.archive import ArchiveError
    from desk.archive.backup import restore

    try:
        counts = restore(_database_url(), settings.load().data_dir, source, log=lambda m: click.echo(m, err=True))
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restore: {sum(counts.values())} rows in {len(counts)} tables, as in the backup", err=True)


# -- encryption at rest (desk/crypto.py; docs/operations.md, "Encryption at rest") ---------------------------------


@main.command("rotate-keys")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(min=1), help="Rows a transaction.")
@click.option("--status", "status_only", is_flag=True, help="Only count the values under each key; change nothing.")
@click.option("--tenant", "slug", default=None, help="Only this tenant's rows (default: every tenant's).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def rotate_keys(batch_size: int, status_only: bool, slug: str | None, quiet: bool) -> None:
    """Re-encrypt message bodies and visitors' names and emails with DESKBELL_ENCRYPTION_ACTIVE's key (or, with
    none active, write them as plain text again). Resumable: run it again after an interruption."""
    from sqlalchemy import select

    from desk import crypto
    from desk.db import system_session
    from desk.models import Tenant

    _database_url()
    ring = crypto.keyring()
    with system_session() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == slug)) if slug else None
        if slug and tenant_id is None:
            raise click.BadParameter(f"no tenant with the slug {slug!r}", param_hint="--tenant")
        if not status_only:
            done = crypto.rotate(session, ring, _Bar(quiet), batch_size, tenant_id)
            target = f"key {ring.active}" if ring.active else "plain text"
            click.echo(f"rotate-keys: {done.rewritten} value(s) rewritten as {target}", err=True)
        census = crypto.census(session, tenant_id)
    for column, counts in census.items():
        click.echo(f"{column}: " + (", ".join(f"{kid} {n}" for kid, n in sorted(counts.items())) or "empty"))
    if not status_only and done.unreadable:
        missing = ", ".join(f"{column} {n}" for column, n in done.unreadable.items())
        raise click.ClickException(
            f"values no configured key opens were left as they are ({missing}): add their keys to "
            "DESKBELL_ENCRYPTION_KEYS (the counts above name them) and run it again"
        )


@main.command("bundle")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("deskbell-bundle.tar.gz"),
              show_default=True, help="The .tar.gz to write.")  # fmt: skip
@click.option("--find-links", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A folder of wheels to use before the index (e.g. a previous bundle's wheels/).")  # fmt: skip
def bundle_command(out: Path, find_links: Path | None) -> None:
    """Make the offline install bundle: wheels for this Python and machine, the source at HEAD, the front-end
    files, a manifest with checksums (docs/install.md). Needs access to the package registries."""
    import subprocess

    from desk import bundle

    try:
        bundle.build(out, find_links=find_links, log=lambda m: click.echo(m, err=True))
    except (bundle.BundleError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except subprocess.CalledProcessError as exc:
        raise click.ClickException(f"{' '.join(map(str, exc.cmd))} failed (exit {exc.returncode})") from None


@main.command()
@click.option("--port", type=int, default=None, help="HTTP port (default: $PORT or 8000).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes to run.")
def dev(port: int | None, workers: int) -> None:
    """Run everything on this machine: embedded PostgreSQL and NATS unless DATABASE_URL/NATS_URL say otherwise."""
    from honcho.environ import parse_procfile
    from honcho.manager import Manager

    from desk.embedded import NatsServer, start_postgres

    config = settings.load()
    env = dict(os.environ)
    env["SECRET_KEY"] = config.secret_key
    env["PORT"] = str(port or config.port)
    env.setdefault("HOST", "127.0.0.1")  # development serves plain HTTP: keep it on this machine
    # The Procfile names `python` and `hypercorn`: make them this installation's, even when not activated.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    nats: NatsServer | None = None
    if not config.database_url:
        click.echo(f"dev: starting embedded PostgreSQL under {config.data_dir / 'pg'}", err=True)
        env["DATABASE_URL"] = start_postgres(config.data_dir)
    if not config.nats_url:
        nats = NatsServer(config.data_dir / "nats", port=int(env.get("DESKBELL_NATS_PORT", "14222")))
        click.echo(f"dev: starting embedded nats-server on {nats.url} (JetStream in {nats.store_dir})", err=True)
        nats.start()
        env["NATS_URL"] = nats.url
    os.environ.update(env)
    try:
        procfile = parse_procfile((ROOT / "Procfile").read_text())
        _run_release(env)
        _print_demo_logins(env)
        _self_check()
        manager = Manager()
        for name, entry in procfile.processes.items():
            if name == "release":
                continue
            for i in range(workers if name == "worker" else 1):
                manager.add_process(f"{name}.{i + 1}", entry, env=env, cwd=str(ROOT))
        click.echo(
            f"\n  Deskbell is running: demo page http://127.0.0.1:{env['PORT']}/demo, "
            f"console http://127.0.0.1:{env['PORT']}/console\n",
            err=True,
        )
        manager.loop()
        sys.exit(manager.returncode)
    finally:
        if nats is not None:
            nats.stop()


def _self_check() -> None:
    """`doctor` on every start (the edge check needs the web process, so it is left to `deskbell doctor`)."""
    from desk import doctor as checks

    results = checks.run_all(edge=False)
    click.echo("\n" + checks.report(results), err=True)
    if not all(c.ok for c in results):
        click.echo("dev: some checks failed (above); Deskbell starts anyway", err=True)


def _run_release(env: dict[str, str]) -> None:
    import subprocess

    subprocess.run([sys.executable, "-m", "desk.cli", "release"], env=env, check=True, cwd=ROOT)


def _print_demo_logins(env: dict[str, str]) -> None:
    import subprocess

    marker = Path(settings.load().data_dir) / "demo-logins.txt"
    out = subprocess.run(
        [sys.executable, "-m", "desk.cli", "bootstrap", "--json", "--agent", "agent@demo.deskbell.local"],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out)
    if result["created"]:
        lines = [f"owner  {result['owner_email']}  {result['owner_password']}"]
        lines += [f"agent  {a['email']}  {a['password']}" for a in result["agents"]]
        marker.write_text("\n".join(lines) + "\n")
        marker.chmod(0o600)
        click.echo("\n  Demo logins (shown once; also in " + str(marker) + "):\n  " + "\n  ".join(lines), err=True)
    else:
        click.echo(f"dev: demo tenant exists; its logins were printed on first run ({marker})", err=True)



@main.command("domain")
@click.argument("slug")
@click.argument("domain", required=False)
@click.option("--clear", is_flag=True, help="Take the tenant's domain away.")
def domain_command(slug: str, domain: str | None, clear: bool) -> None:
    """Show, set or clear the host name a tenant's people use (SaaS mode; docs/admin.md, "Per-tenant domains")."""
    from sqlalchemy import select

    from desk import domains
    from desk.actions.admin import ActionError
    from desk.db import system_session
    from desk.models import Tenant

    with system_session() as db:
        tenant = db.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None:
            raise click.ClickException(f"no tenant {slug!r}")
        if domain is None and not clear:
            click.echo(tenant.domain or "(none)")
            return
        try:
            stored = domains.do_set_domain(db, tenant.id, None if clear else domain)
        except ActionError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"{slug}: {stored or '(no domain)'}")


if __name__ == "__main__":
    main()
