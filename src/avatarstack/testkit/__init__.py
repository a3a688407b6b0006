"""Faithful fake servers for the external services avatarstack talks to.

For tests, never for production.
"""
