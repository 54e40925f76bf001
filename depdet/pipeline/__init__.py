"""The data path: decode -> extract -> align -> store -> load -> model -> report."""
