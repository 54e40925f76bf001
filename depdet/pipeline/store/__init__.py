"""The feature store (see layout.py until the store lands)."""
from depdet.pipeline.store.layout import *  # noqa: F401,F403
from depdet.pipeline.store.layout import _norm_label  # noqa: F401
from depdet.pipeline.store.layout import derive_valid  # noqa: F401
