"""The `jobstore-exporter` command line: the only code that may use both halves (the kit only
through ``kit_seam``)."""
