"""The small factories the container's providers call, one module per context. The container
(:mod:`avatarstack.bootstrap.container`) stays the one place that says what runs; these say how
each piece is made from the settings and the plugins."""
