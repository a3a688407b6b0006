"""Console adapters for development: they write to the log instead of talking to the world."""

from avatarstack.adapters.console.mailer import ConsoleMailer

__all__ = ["ConsoleMailer"]
