"""The on-call workflow: incident actions (ack, assign, note, close), Alertmanager silences,
label matchers for finding incidents, and the audit log of admin and operator changes."""
