"""The commands of the ``depdet`` command line, grouped by stage; :mod:`depdet.cli` is the entry point."""
