"""``avatarstack users``: create accounts and set their roles."""

from __future__ import annotations

import sys

import click

from avatarstack.bootstrap.cli.context import CliContext, cli, pass_cli
from avatarstack.core.accounts import MEMBER, ROLES
from avatarstack.core.identity import Profile, RequestContext


@cli.group()
def users() -> None:
    """Manage user accounts."""


@users.command("create")
@click.argument("email")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(ROLES),
    help="Role to grant (repeat for several; default member).",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input.",
)
@pass_cli
def users_create(ctx: CliContext, email: str, roles: tuple[str, ...], password_stdin: bool) -> None:
    """Create a verified user. Without a password the user signs in through a password
    reset or an external provider; a default password is never set."""
    ctx.settings  # noqa: B018 - invalid settings are reported before a password is asked
    password: str | None = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def create() -> Profile:
        async with ctx.services() as container:
            return await container.identity().admin.create_user(
                email, password, frozenset(roles or (MEMBER,)), RequestContext(ip="cli")
            )

    profile = ctx.run(create())
    click.echo(
        f"created {profile.user.email} ({profile.user.id}) with roles "
        f"{', '.join(sorted(profile.roles))}" + ("" if password else "; no password set")
    )


@users.command("set-roles")
@click.argument("email")
@click.argument("roles", nargs=-1, required=True, type=click.Choice(ROLES))
@pass_cli
def users_set_roles(ctx: CliContext, email: str, roles: tuple[str, ...]) -> None:
    """Replace a user's roles (the last admin cannot lose the admin role)."""

    async def update() -> Profile:
        async with ctx.services() as container:
            identity = container.identity()
            user = await identity.admin.find_user(email)
            return await identity.admin.set_roles(
                None, user.id, frozenset(roles), RequestContext(ip="cli")
            )

    profile = ctx.run(update())
    click.echo(f"{profile.user.email}: {', '.join(sorted(profile.roles))}")
