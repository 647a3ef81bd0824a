"""Pipeline stage: api."""
