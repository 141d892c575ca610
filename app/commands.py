"""Flask CLI commands: `flask seed-demo`, `flask create-staff`, `flask create-platform-operator`,
`flask outbox-relay`, ..."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach the project's commands to `flask`."""
    register_account_commands(app)
    register_outbox_commands(app)
    register_open311_commands(app)
    register_screen_commands(app)


def register_account_commands(app: Flask) -> None:
    """seed-demo, create-staff and the platform operator commands."""
    import click
    from flask import current_app

    from app.errors import APIError
    from app.extensions import db
    from app.models import Role
    from app.services import accounts, demo

    reset_password_option = click.option(
        "--reset-password", is_flag=True,
        help="For an existing login: replace its password (otherwise give its current one).")

    def echo_summary(summary: dict) -> None:
        """Print the row counts (with what this run created) and the demo logins."""
        community = summary["community"]
        click.echo(f"Demo community {community['name']} ({community['code']}):")
        for name, count in summary["counts"].items():
            new = summary["created"].get(name, 0)
            click.echo(f"  {name:<20} {count:>6}" + (f"  (+{new} new)" if new else ""))
        click.echo("\nDEMO-ONLY logins - for demonstrations, never for real use:")
        rows = [["username", "org", "roles", "password"], *login_rows(summary["logins"])]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            cells = [c.ljust(w) for c, w in zip(row[:3], widths, strict=True)] + [row[3]]
            click.echo("  " + "  ".join(cells))

    def login_rows(logins: list[dict]) -> list[list[str]]:
        """Table rows; consecutive logins sharing org, roles and password fold into one."""
        rows: list[list[str]] = []
        for login in logins:
            row = [login["username"], login["org"], "+".join(login["roles"]), login["password"]]
            if rows and rows[-1][1:] == row[1:]:
                rows[-1][0] = f"{rows[-1][0].split('..')[0]}..{row[0]}"
            else:
                rows.append(row)
        return rows

    @app.cli.command("seed-demo")
    def seed_demo_command() -> None:
        """Create the 总浦桥 demo community (idempotent) and print its demo logins."""
        if current_app.config["LINLI_ENV"] == "production":
            raise click.ClickException("seed-demo refuses to run in production")
        echo_summary(demo.seed_demo())

    @app.cli.command("create-staff")
    @click.option("--username", required=True, help="The login name.")
    @click.option("--password", required=True, prompt=True, hide_input=True,
                  confirmation_prompt=True, help="At least 8 characters.")
    @click.option("--org", "org_code", required=True, help="The org's code, e.g. zpq-property.")
    @click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
    @click.option("--name", "display_name", default=None, help="Display name (default: username).")
    @reset_password_option
    def create_staff_command(username: str, password: str, org_code: str, role: str,
                             display_name: str | None, reset_password: bool) -> None:
        """Create a staff login with a role in an org (or add the role to an existing login,
        whose password stays: give its current one, or --reset-password)."""
        try:
            user = accounts.create_staff(username=username, password=password,
                                         org_code=org_code, role=role, display_name=display_name,
                                         reset_password=reset_password)
        except APIError as exc:
            db.session.rollback()
            raise click.ClickException(f"{exc.message} ({exc.code})") from exc
        click.echo(f"Staff login {user.username!r} (id {user.id}) has role {role} in {org_code}.")

    @app.cli.command("create-platform-operator")
    @click.option("--username", required=True, help="The login name (an existing one is flagged).")
    @click.option("--password", required=True, prompt=True, hide_input=True,
                  confirmation_prompt=True, help="At least 8 characters.")
    @click.option("--name", "display_name", default=None, help="Display name (default: username).")
    @reset_password_option
    def create_platform_operator_command(username: str, password: str,
                                         display_name: str | None, reset_password: bool) -> None:
        """Create a platform operator: failed jobs of every community, no org of its own (an
        existing login is flagged and keeps its password unless --reset-password)."""
        try:
            user = accounts.make_platform_operator(username=username, password=password,
                                                   display_name=display_name,
                                                   reset_password=reset_password)
        except APIError as exc:
            db.session.rollback()
            raise click.ClickException(f"{exc.message} ({exc.code})") from exc
        click.echo(f"Login {user.username!r} (id {user.id}) is a platform operator; it signs in "
                   "through POST /api/v1/auth/staff-login.")

    @app.cli.command("revoke-platform-operator")
    @click.option("--username", required=True, help="The login name.")
    def revoke_platform_operator_command(username: str) -> None:
        """Take the platform operator role away from a login (at once, whatever its tokens say)."""
        try:
            user = accounts.revoke_platform_operator(username=username)
        except APIError as exc:
            db.session.rollback()
            raise click.ClickException(f"{exc.message} ({exc.code})") from exc
        click.echo(f"Login {user.username!r} (id {user.id}) is no longer a platform operator.")


def register_outbox_commands(app: Flask) -> None:
    """outbox-relay."""
    import time

    import click
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from app.extensions import db
    from app.services import outbox

    def relay_once(older_than: float, limit: int) -> None:
        """One relay pass, printing its count; a database outage is reported, not fatal."""
        try:
            count = outbox.relay_pending(older_than_seconds=older_than, limit=limit)
        except (SQLAlchemyError, RedisError) as exc:
            db.session.rollback()
            click.echo(f"outbox relay failed: {type(exc).__name__}: {exc}", err=True)
            return
        click.echo(f"re-enqueued {count} outbox message(s)")

    @app.cli.command("outbox-relay")
    @click.option("--once", is_flag=True, help="Run one pass and exit.")
    @click.option("--interval", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
                  help="Seconds between passes.")
    @click.option("--older-than", default=30.0, show_default=True, type=click.FloatRange(min=0),
                  help="Only rows created or enqueued at least this many seconds ago.")
    @click.option("--limit", default=500, show_default=True, type=click.IntRange(min=1),
                  help="At most this many rows per pass.")
    def outbox_relay_command(once: bool, interval: float, older_than: float, limit: int) -> None:
        """Re-enqueue outbox rows still pending whose job was lost (Redis or a worker was down)."""
        while True:
            relay_once(older_than, limit)
            if once:
                return
            db.session.remove()
            time.sleep(interval)


def register_open311_commands(app: Flask) -> None:
    """open311-key."""
    import click

    from app.errors import APIError
    from app.extensions import db
    from app.services import open311

    @app.cli.command("open311-key")
    @click.option("--org", "org_code", required=True, help="The org's code, e.g. zpq-office.")
    @click.option("--name", default="", help="What the key is for, e.g. the city system's name.")
    def open311_key_command(org_code: str, name: str) -> None:
        """Issue an Open311 API key for an org; the key is printed once and never stored."""
        try:
            row, api_key = open311.issue_key(org_code=org_code, name=name)
        except APIError as exc:
            db.session.rollback()
            raise click.ClickException(f"{exc.message} ({exc.code})") from exc
        click.echo(f"Open311 key #{row.id} for {org_code}" + (f" ({name})" if name else "")
                   + " - shown once, store it now:")
        click.echo(api_key)


def register_screen_commands(app: Flask) -> None:
    """screen-token."""
    import click

    from app.errors import APIError

    @app.cli.command("screen-token")
    @click.option("--community", "community_code", required=True, help="community code, e.g. zpq")
    def screen_token(community_code: str) -> None:
        """Issue a new token for the community's big screen (the old one stops working)."""
        from app.services.screen import issue_token

        try:
            token = issue_token(community_code)
        except APIError as exc:
            raise click.ClickException(exc.message) from exc
        click.echo(f"screen token for {community_code}: {token}")
        click.echo(f"open http://127.0.0.1:5000/screen?token={token}")
