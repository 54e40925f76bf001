"""The feature store stage: the only code that knows the on-disk layouts, the sample records and the labels.

* :mod:`.layout`: where every file of a sample lives (D-Vlog and LMVD layouts), the legacy validity rule;
* :mod:`.labels`: the label vocabulary and the one parser of label tables;
* :mod:`.store`: :class:`FeatureStore` (units of arrays + validity + record, views, lock, spec check);
* :mod:`.views`: what the views are made of (manifest rows, extractor versions).
"""

from depdet.pipeline.store.labels import format_label, parse_label, read_label_table
from depdet.pipeline.store.layout import FEATURES_JSON, LABELS, LAYOUTS, MANIFEST, check_id, derive_valid, detect_layout
from depdet.pipeline.store.store import RECORD_SCHEMA, FeatureStore, StoreBusy, StoredSample
from depdet.pipeline.store.views import USABLE, manifest_row

__all__ = [
    "FEATURES_JSON",
    "LABELS",
    "LAYOUTS",
    "MANIFEST",
    "RECORD_SCHEMA",
    "USABLE",
    "FeatureStore",
    "StoreBusy",
    "StoredSample",
    "check_id",
    "derive_valid",
    "detect_layout",
    "format_label",
    "manifest_row",
    "parse_label",
    "read_label_table",
]
