"""Laptop tooling: embedded servers, the dev runner, demo data.

Not in the production image (see Dockerfile); only `courtside dev` and `courtside seed` use it.
"""
