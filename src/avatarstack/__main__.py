"""``python -m avatarstack`` is the ``avatarstack`` command."""

from avatarstack.bootstrap.cli import main

main()
