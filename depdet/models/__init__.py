"""The model zoo. Importing this package registers every family (one module each)."""

# Each family module registers itself on import. Keep this list in sync with the files in models/.
import importlib as _importlib

from depdet.models.registry import create_model, get_entry, list_models, register_model  # noqa: F401

for _family in ("fusion", "classic", "detector", "tamfn", "jamfn", "mimml", "depmamba", "dynmultidep", "asym"):
    _importlib.import_module(f"depdet.models.{_family}")
