"""musicaas: music AI as a service.

The ``musicaas`` package is the shared runtime of every service: settings, logging,
the error tree, the gRPC server lifecycle, NATS JetStream event helpers, music
vocabulary (keys and modes), the generated protobuf code (``musicaas.<area>.v1``)
and the ``musicaas`` command line.
"""

__version__ = "0.1.0"
