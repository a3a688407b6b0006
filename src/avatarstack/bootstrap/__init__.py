"""The composition root: settings, logging, plugins, container, application, CLI.

Product teams embed avatarstack with::

    from avatarstack.bootstrap import Settings, build_container, create_app

    app = create_app(Settings(database_url="postgresql://…"))
"""

from avatarstack.bootstrap.app import create_app
from avatarstack.bootstrap.container import Container, build_container
from avatarstack.bootstrap.settings import Settings

__all__ = ["Container", "Settings", "build_container", "create_app"]
