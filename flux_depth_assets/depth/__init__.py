"""Depth math with no Dagster in it: encoding, the local estimator, derived products."""
