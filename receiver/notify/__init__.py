"""Pipeline stage: notify."""
