"""The console's Jinja2 environment (package templates, autoescape on) and its page CSP."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader

# Immutable configuration, not state: built once at import like a compiled regex.
TEMPLATES = Environment(
    loader=PackageLoader("receiver.ui", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)

# Console pages load only same-origin styles, images and the one feedback script.
CONSOLE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
