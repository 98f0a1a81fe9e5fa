"""Sub-commands of the ``autotrader`` command line, one module per group."""
