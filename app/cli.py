"""Command line: ``privid serve`` for development, ``privid worker`` to send the
outbox, ``flask`` commands for operators."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask, current_app
from sqlalchemy.engine import make_url

from app.resources import resource_dir
from app.sealer import seal_committed
from app.services.chain import ChainKeeper, ChainTampered, Sealed, Verdict
from app.services.container import Services
from app.services.policies import NewPolicy
from app.settings import Settings

DEVELOPMENT_POLICY = resource_dir("config") / "privacy-policy.md"


def register_cli(app: Flask) -> None:
    @app.cli.command("migrate")
    def migrate_command() -> None:
        """Bring the database to the latest migration."""
        from app.migrate import upgrade

        upgrade(current_app.extensions["privid.settings"].database_url)
        click.echo("database is at the latest migration")

    @app.cli.command("audit-verify")
    def audit_verify_command() -> None:
        """Check the audit trail against its keyed chain and its last signed
        checkpoint; exit 1 naming what does not fit. When intact, seal what is
        new and write a checkpoint."""
        with unit_of_work() as svc:
            verify_and_seal(svc, svc.audit.verify(), svc.audit.chain(), "audit chain")

    @app.cli.command("chain-seal")
    def chain_seal_command() -> None:
        """Seal new consent records and audit events into their chains and write
        signed checkpoints (`privid worker` does this every few seconds; run it
        from cron where no worker seals). Exit 1 if a chain shows a gap."""
        from app.sealer import LedgerSealer

        report = LedgerSealer.for_app(current_app).run_once()
        plurals = {"consent": "records", "audit": "events"}
        for chain, sealed in report.sealed.items():
            click.echo(f"{chain}: {describe_seals(sealed, plurals[chain])}")
        for chain, why in report.refused.items():
            click.echo(f"{chain}: not sealed: {why}", err=True)
        if report.refused:
            sys.exit(1)

    @app.cli.command("policy-publish")
    @click.option("--version", "version", required=True)
    @click.option("--text-file", type=click.Path(exists=True, dir_okay=False), required=True)
    @click.option("--effective-at", type=click.DateTime(), default=None, help="UTC; default now")
    @click.option("--material/--not-material", default=False)
    @click.option("--changes", required=True, help="What changed, in a sentence or two")
    @click.option("--purpose", "purposes", multiple=True, help="Purposes a material change touches")
    def policy_publish_command(
        version: str,
        text_file: str,
        effective_at: datetime | None,
        material: bool,
        changes: str,
        purposes: tuple[str, ...],
    ) -> None:
        """Publish a privacy policy version (versions never change once published)."""
        from app.errors import ServiceError

        with unit_of_work() as svc:
            when = effective_at.replace(tzinfo=UTC) if effective_at else svc.runtime.clock.now()
            try:
                published = svc.policies.publish(
                    NewPolicy(
                        version=version,
                        effective_at=when,
                        text=Path(text_file).read_text(encoding="utf-8"),
                        material=material,
                        changes=changes,
                        affected_purposes=list(purposes),
                    ),
                    published_by="cli",
                )
            except ServiceError as error:
                raise click.ClickException(error.detail) from None
            click.echo(f"published policy {published.version} ({published.text_sha256[:12]}…)")

    @app.cli.command("consent-verify")
    def consent_verify_command() -> None:
        """Check the consent ledger against its keyed chains and its last signed
        checkpoint; exit 1 naming what does not fit. When intact, seal what is
        new and write a checkpoint."""
        with unit_of_work() as svc:
            verify_and_seal(svc, svc.consent.verify_chain(), svc.consent.chain(), "consent ledger")

    @app.cli.command("retention-run")
    def retention_run_command() -> None:
        """Delete what has outlived its retention period; prints counts (cron-safe)."""
        with unit_of_work() as svc:
            counts = svc.retention.run()
        for table, count in counts.items():
            click.echo(f"{table}: {count} deleted")

    @app.cli.command("outbox-deliver")
    @click.option("--limit", default=500, show_default=True, type=click.IntRange(min=1))
    def outbox_deliver_command(limit: int) -> None:
        """One pass of the outbox worker (`privid worker` runs them in a loop): send
        the messages that are due; prints counts (cron-safe)."""
        from dataclasses import asdict

        from app.worker import OutboxWorker

        report = OutboxWorker.for_app(current_app).run_once(limit)
        if report.total:  # a quiet run every minute would flood the trail
            with unit_of_work() as svc:
                svc.audit.record("outbox.delivered", via="cli", **asdict(report))
        click.echo(
            f"sent {report.sent}, retrying {report.retrying}, "
            f"abandoned {report.abandoned}, skipped {report.skipped}"
        )

    @app.cli.command("operator-grant")
    @click.argument("email")
    def operator_grant_command(email: str) -> None:
        """Make the account with this email an operator (the first one comes from here)."""
        from app.models import Role

        with unit_of_work() as svc:
            user = svc.directory.find(svc.directory.email(email))
            if user is None:
                raise click.ClickException("no account has that email")
            user.role = Role.OPERATOR
            svc.audit.record("operator.granted", user_id=user.id, via="cli")
        click.echo("operator role granted")


def verify_and_seal(svc: Services, verdict: Verdict, keeper: ChainKeeper, title: str) -> None:
    """Report a verdict; exit 1 listing the problems (nothing is sealed over
    them), else seal what is new and checkpoint it."""
    plural = verdict.ledger.plural
    if not verdict.intact:
        click.echo(f"{title} broken:", err=True)
        for problem in verdict.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)
    last = verdict.checkpoint
    checked = f"checked against the checkpoint of {last.at}" if last else "no checkpoint yet"
    click.echo(f"{title} intact: {verdict.rows} {plural} in {verdict.seals} seals, {checked}")
    try:
        sealed = seal_committed(svc.db, keeper)
    except ChainTampered as refused:  # changed since it was verified
        click.echo(f"{title} not sealed: {refused}", err=True)
        sys.exit(1)
    if sealed:
        click.echo(f"{describe_seals(sealed, plural)}; checkpoint written")
    if keeper.held_back:  # changed since it was verified
        click.echo(f"{title}: not sealed: {'; '.join(keeper.held_back)}", err=True)
        sys.exit(1)


def describe_seals(sealed: list[Sealed], plural: str) -> str:
    if not sealed:
        return "nothing new to seal"
    count = sum(s.rows for s in sealed)
    numbers = (
        f"seal {sealed[0].seq}" if len(sealed) == 1 else f"seals {sealed[0].seq}–{sealed[-1].seq}"
    )
    return f"sealed {count} new {plural} in {numbers}"


@contextmanager
def unit_of_work() -> Iterator[Services]:
    """Services for one CLI command: committed if it finishes, rolled back if not."""
    factory = current_app.extensions["privid.session_factory"]
    svc = Services(factory(), current_app.extensions["privid.runtime"])
    try:
        yield svc
        svc.db.commit()
    except BaseException:
        svc.db.rollback()
        raise
    finally:
        svc.db.close()


def publish_development_policy(app: Flask) -> None:
    """A fresh development database gets config/privacy-policy.md as its policy."""
    with app.app_context(), unit_of_work() as svc:
        if svc.policies.current() is None:
            svc.policies.publish(
                NewPolicy(
                    version="dev-1",
                    effective_at=svc.runtime.clock.now(),
                    text=DEVELOPMENT_POLICY.read_text(encoding="utf-8"),
                    material=False,
                    changes="First version.",
                    affected_purposes=[],
                ),
                published_by="cli",
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="privid")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="migrate the database and run the development server (and a worker)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    sub.add_parser("migrate", help="bring the database to the latest migration")
    sub.add_parser("worker", help="send the outbox's messages until stopped (SIGTERM)")
    args = parser.parse_args(argv)

    settings = Settings()
    from app.telemetry.logs import configure_logging

    # Every line this process logs from here on (alembic's, werkzeug's, the
    # app's, the worker's) goes through the one handler: redacted, request ids.
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "worker":
        run_worker(settings)
        return
    from app.migrate import upgrade

    upgrade(settings.database_url)
    if args.command == "migrate":
        print("database is at the latest migration")
        return

    from app import create_app
    from app.worker import OutboxWorker

    app = create_app(settings)
    if not settings.is_production:
        publish_development_policy(app)
    # Development: one worker on a thread sends what requests queue.
    OutboxWorker.for_app(app).start()
    logging.getLogger("app.cli").info(
        "privid (%s) serving on http://%s:%s with %s; codes are printed on stdout",
        settings.env, args.host, args.port,
        make_url(settings.database_url).render_as_string(hide_password=True),
    )  # fmt: skip
    from werkzeug.serving import run_simple

    from app.access_log import AddresslessRequestHandler

    # run_simple, not app.run: Flask's banner is printed, not logged, and
    # would be the one line on stderr that is not JSON.
    run_simple(args.host, args.port, app, threaded=True, request_handler=AddresslessRequestHandler)


def run_worker(settings: Settings) -> None:
    """`privid worker`: the outbox worker as a process; SIGTERM or Ctrl-C ends it
    after the message in hand."""
    import signal
    import threading

    from app import create_app
    from app.worker import OutboxWorker

    app = create_app(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sealing = settings.chain_seal_interval_seconds
    logging.getLogger("app.cli").info(
        "privid worker (%s) polling every %ss, %s", settings.env, settings.outbox_poll_seconds,
        f"sealing the ledgers every {sealing}s" if sealing else "not sealing",
    )  # fmt: skip
    try:
        OutboxWorker.for_app(app).run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        app.extensions["privid.engine"].dispose()
