"""Pipeline stage: enrich."""
