"""`depdet demo`: a drawn clip and synthetic data run through extract -> train -> predict -> report."""
