"""musicaas_cli: the ``musicaas`` command line, the embedded local stack and the demo.

It sits above the services: it may import the shared ``musicaas`` package and the service
packages (``musicaas analyze --plot`` draws with ``musicaas_analyzer.plots``); nothing imports it
but its own entry points and the end-to-end tests.

- :mod:`musicaas_cli.main`: the argument parser and every sub-command.
- :mod:`musicaas_cli.stack`: :class:`~musicaas_cli.stack.LocalStack`, the whole platform as child processes on loopback.
- :mod:`musicaas_cli.demo`: ``musicaas demo``, the main job on real music.
"""
