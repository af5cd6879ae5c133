"""spoolmq's composition root: configuration, logging, process assembly and the CLI.

This package imports every layer (storage, broker, http_gateway) and nothing
imports it back.
"""

__version__ = "0.1.0"
