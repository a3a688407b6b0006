"""Adapters: one package per technology, each implementing one or more ports."""
