"""The aiohttp adapter: routes, handlers, middlewares, problem responses, OpenAPI."""
