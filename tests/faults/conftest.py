"""Fault injection against real processes: ``avatarstack serve`` killed with SIGKILL, a
throwaway PostgreSQL cluster stopped and frozen, a Chroma server killed, an SMTP server that
refuses. Every test starts the processes it breaks; the shared PostgreSQL server is never
touched."""

from __future__ import annotations
