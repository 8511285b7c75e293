"""Ops tooling for the class's shared GPU inference server (preflight, engine, keys, load tests).

The server setup is built in a later issue; this package is its home.
"""
