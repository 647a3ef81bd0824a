"""Pipeline stage: rulegen."""
