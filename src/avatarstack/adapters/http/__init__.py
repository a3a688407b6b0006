"""The aiohttp adapter: routes, handlers, the request pipeline, problem responses, OpenAPI."""
