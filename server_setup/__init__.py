"""Ops tooling for the class's shared inference server: ``python -m server_setup``.

- :mod:`~server_setup.plan`      will the model fit the server? (:func:`~server_setup.plan.plan`)
- :mod:`~server_setup.hardware`  the host: GPU sizes given or detected, a CPU host's RAM
- :mod:`~server_setup.report`    the plan as a table, and the refusal with what fits instead
- :mod:`~server_setup.settings`  one deployment's settings (:mod:`courselib.config`)
- :mod:`~server_setup.engines`   the inference engines, one module each (vLLM, Triton,
                                llama.cpp): memory, command line, files, gateway prefixes
- :mod:`~server_setup.render`    the deployable files (compose, systemd, Apptainer, Slurm)
- :mod:`~server_setup.gateway`   nginx in front of the engine: per-student keys, limits, log
- :mod:`~server_setup.local`     ``up``/``down``/``status``: the CPU deployment on this machine
- :mod:`~server_setup.check`     ``check``: smoke test of a running server through its gateway
- :mod:`~server_setup.loadtest`  ``loadtest``: simulated students; the gateway's overhead
- :mod:`~server_setup.dryrun`    a throwaway deployment; ``dry-run`` (``make demo``)
- :mod:`~server_setup.cli`       the command line (``plan``, ``init``, ``render``, ``keys``,
                                ``up``, ``down``, ``status``, ``check``, ``loadtest``, ``dry-run``)
"""
