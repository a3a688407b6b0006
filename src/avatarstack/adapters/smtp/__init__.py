"""SMTP delivery with aiosmtplib: STARTTLS, AUTH, retries with backoff on transient failures."""

from avatarstack.adapters.smtp.mailer import SmtpMailer

__all__ = ["SmtpMailer"]
