"""Command line: ``privid serve`` for development, ``flask`` commands for operators."""

from __future__ import annotations

import argparse
import sys

import click
from flask import Flask, current_app
from sqlalchemy.engine import make_url

from app.settings import Settings


def register_cli(app: Flask) -> None:
    @app.cli.command("migrate")
    def migrate_command() -> None:
        """Bring the database to the latest migration."""
        from app.migrate import upgrade

        upgrade(current_app.extensions["privid.settings"].database_url)
        click.echo("database is at the latest migration")

    @app.cli.command("audit-verify")
    def audit_verify_command() -> None:
        """Check the audit trail's hash chain; exit 1 naming the first bad event."""
        from app.services.audit import AuditTrail

        factory = current_app.extensions["privid.session_factory"]
        runtime = current_app.extensions["privid.runtime"]
        with factory() as db:
            broken = AuditTrail(db, runtime.clock).verify()
        if broken is None:
            click.echo("audit chain intact")
            return
        click.echo(f"audit chain broken at event {broken.event_id}: {broken.reason}", err=True)
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="privid")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate the database and run the development server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    sub.add_parser("migrate", help="bring the database to the latest migration")
    args = parser.parse_args(argv)

    settings = Settings()
    from app.migrate import upgrade

    upgrade(settings.database_url)
    if args.command == "migrate":
        print("database is at the latest migration")
        return

    from app import create_app

    app = create_app(settings)
    print(
        f"privid ({settings.env}) serving on http://{args.host}:{args.port} "
        f"with {make_url(settings.database_url).render_as_string(hide_password=True)}; "
        "codes are printed here",
        flush=True,
    )
    app.run(host=args.host, port=args.port, threaded=True)
