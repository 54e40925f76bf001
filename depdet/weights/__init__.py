"""Weight files: the registry of known files and checksums (registry.py), where they are looked up, verified and installed."""
