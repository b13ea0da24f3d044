"""Generators of the reference pages under docs/reference, each with `render() -> str`."""
