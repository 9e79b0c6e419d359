"""Serving HTTP: the aiohttp app, the listening socket and its limits, TLS and basic auth."""
