"""Integration tests against fake external servers on 127.0.0.1.

The ``fake_google`` and ``fake_github`` fixtures come from :mod:`avatarstack.testing` (the
``pytest11`` plugin), so the HTTP tests use the same ones.
"""
