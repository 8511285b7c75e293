"""Ops tooling for the class's shared inference server: ``python -m server_setup``.

- :mod:`~server_setup.plan`      will the model fit the server? (:func:`~server_setup.plan.plan`)
- :mod:`~server_setup.hardware`  the host: GPU sizes given or detected, a CPU host's RAM
- :mod:`~server_setup.report`    the plan as a table, and the refusal with what fits instead
- :mod:`~server_setup.cli`       the command line (``plan``; render, up/down, check to come)
"""
