"""The thin Dagster layer: assets, checks, sensors, schedules, resources, all built from config."""
