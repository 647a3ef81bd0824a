"""Pipeline stage: detect."""
