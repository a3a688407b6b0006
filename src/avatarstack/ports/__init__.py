"""Ports: ``typing.Protocol`` interfaces and the pydantic models that cross them."""
