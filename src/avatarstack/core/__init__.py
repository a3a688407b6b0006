"""Domain models and services. Pure Python: imports only the standard library, pydantic,
structlog and :mod:`avatarstack.ports`."""
