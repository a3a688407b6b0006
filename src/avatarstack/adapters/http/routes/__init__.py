"""Route handlers grouped by area; each module exposes ``ROUTES``."""
