"""The class gateway: nginx (Debian's package + njs) in front of the engine.

- :mod:`~server_setup.gateway.nginx`  the rendered ``gateway/nginx.conf`` (+ ``gateway.js``)
- :mod:`~server_setup.gateway.keys`   per-student keys from a roster CSV, stored hashed
- :mod:`~server_setup.gateway.usage`  usage per student from the access log: table and plot
"""
