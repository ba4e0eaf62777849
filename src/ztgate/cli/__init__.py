"""The `ztgate` command line: thin commands over the public API."""
