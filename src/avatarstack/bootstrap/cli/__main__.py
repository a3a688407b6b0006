"""``python -m avatarstack.bootstrap.cli`` is the ``avatarstack`` command."""

from avatarstack.bootstrap.cli import main

main()
