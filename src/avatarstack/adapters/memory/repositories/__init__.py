"""The in-memory repositories, one module per storage context (see
``avatarstack.ports.storage``); :mod:`avatarstack.adapters.memory.storage` binds them to a
unit of work."""
