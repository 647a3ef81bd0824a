"""The incident console (`/ui`): server-rendered pages, evidence charts, console login."""
