"""Prometheus targets the poller watches: the PROM_URL default plus stored ones.

Holds the API's input models (errors name the field), the masked view (auth secrets are never
returned), and `PollTarget`, what the poller needs to reach one Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    field_validator,
    model_validator,
)

from receiver.detect.prometheus import PrometheusTarget
from receiver.records import LeaseRecord, TargetRecord
from receiver.safety import split_userinfo
from receiver.settings import Settings
from receiver.timeutil import iso_or_none

DEFAULT_NAME = "default"  # the target PROM_URL defines; not stored, not editable
MASK = "********"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class BearerAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["bearer"]
    token: SecretStr = Field(min_length=1, max_length=4096)


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["basic"]
    username: str = Field(min_length=1, max_length=256)
    password: SecretStr = Field(max_length=4096)


AuthIn = Annotated[BearerAuth | BasicAuth, Field(discriminator="type")]


def check_url(value: str) -> str:
    """An http(s) URL with a host and no credentials (those go in `auth`); no trailing slash."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; use auth")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _seed_endpoint(data: Any) -> Any:
    """The seed's `endpoint` is our `url`; both at once must agree."""
    if not isinstance(data, dict) or "endpoint" not in data:
        return data
    out = dict(data)
    endpoint = out.pop("endpoint")
    if "url" in out and out["url"] != endpoint:
        raise ValueError("give url or endpoint (the seed's name for it), not two different ones")
    out["url"] = endpoint
    return out


def _check_name(value: str) -> str:
    if value == DEFAULT_NAME:
        raise ValueError(f"{DEFAULT_NAME!r} is the PROM_URL target and cannot be stored")
    return value


class TargetIn(BaseModel):
    """POST /api/v1/targets."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(max_length=2048)
    job: str = Field(default="", max_length=256)
    enabled: StrictBool = True
    auth: AuthIn | None = None

    _name = field_validator("name")(_check_name)
    _url = field_validator("url")(check_url)
    _endpoint = model_validator(mode="before")(_seed_endpoint)


class TargetUpdate(BaseModel):
    """PUT /api/v1/targets/{name}: fields left out keep their values; `"auth": null` removes it.

    A new `url` without `auth` drops the stored credentials: they were given for the old URL.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = None  # when given, must be the name in the path
    url: str | None = Field(default=None, max_length=2048)
    job: str | None = Field(default=None, max_length=256)
    enabled: StrictBool | None = None
    auth: AuthIn | None = None

    _endpoint = model_validator(mode="before")(_seed_endpoint)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    def changes(self) -> dict[str, Any]:
        """The stored fields this update sets."""
        out: dict[str, Any] = {}
        for name in ("url", "job", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if "auth" in self.model_fields_set:
            out["auth"] = stored_auth(self.auth)
        return out

    def on_new_url(self) -> dict[str, Any]:
        """What to set as well if `url` turns out to differ from the stored one."""
        if self.url is None or "auth" in self.model_fields_set:
            return {}
        return {"auth": None}


def stored_auth(auth: BearerAuth | BasicAuth | None) -> dict[str, str] | None:
    if auth is None:
        return None
    if isinstance(auth, BearerAuth):
        return {"type": "bearer", "token": auth.token.get_secret_value()}
    return {
        "type": "basic",
        "username": auth.username,
        "password": auth.password.get_secret_value(),
    }


def new_target(body: TargetIn) -> TargetRecord:
    return TargetRecord(
        name=body.name,
        url=body.url,
        job=body.job,
        enabled=body.enabled,
        auth=stored_auth(body.auth),
    )


def masked_auth(auth: dict[str, str] | None) -> dict[str, str] | None:
    """What the API shows of stored credentials: the kind and the user name, never a secret."""
    if not auth:
        return None
    if auth.get("type") == "basic":
        return {"type": "basic", "username": auth.get("username", ""), "password": MASK}
    return {"type": auth.get("type", "bearer"), "token": MASK}


def _lease_view(lease: LeaseRecord | None) -> dict[str, Any] | None:
    if lease is None:
        return None
    return {"holder": lease.holder, "expires_at": iso_or_none(lease.expires_at)}


def target_view(target: TargetRecord, lease: LeaseRecord | None = None) -> dict[str, Any]:
    return {
        "name": target.name,
        "url": target.url,
        "endpoint": target.url,  # the seed's name for it
        "job": target.job,
        "enabled": target.enabled,
        "auth": masked_auth(target.auth),
        "builtin": False,
        "created_at": iso_or_none(target.created_at),
        "updated_at": iso_or_none(target.updated_at),
        "lease": _lease_view(lease),
    }


@dataclass(frozen=True)
class PollTarget:
    """One Prometheus to poll: where, which job's series, and how to authenticate."""

    name: str
    url: str
    job: str = ""
    builtin: bool = False
    bearer_token: str | None = field(default=None, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)

    def prometheus(self, timeout: float) -> PrometheusTarget:
        return PrometheusTarget(
            self.url, bearer_token=self.bearer_token, basic_auth=self.basic_auth, timeout=timeout
        )

    def view(self, lease: LeaseRecord | None = None) -> dict[str, Any]:
        """The API view of the PROM_URL target (read-only)."""
        auth = {"type": "basic", "username": self.basic_auth[0]} if self.basic_auth else None
        return {
            "name": self.name,
            "url": self.url,
            "endpoint": self.url,
            "job": self.job,
            "enabled": True,
            "auth": masked_auth(auth),
            "builtin": self.builtin,
            "created_at": None,
            "updated_at": None,
            "lease": _lease_view(lease),
        }


def poll_target(target: TargetRecord) -> PollTarget:
    auth = target.auth or {}
    basic = None
    if auth.get("type") == "basic":
        basic = (auth.get("username", ""), auth.get("password", ""))
    return PollTarget(
        name=target.name,
        url=target.url,
        job=target.job,
        bearer_token=auth.get("token") if auth.get("type") == "bearer" else None,
        basic_auth=basic,
    )


def default_target(settings: Settings) -> PollTarget | None:
    """The PROM_URL target; None when PROM_URL is empty. Credentials in the URL become basic
    auth so the URL itself can be shown and logged."""
    raw = settings.prom_url.strip()
    if not raw:
        return None
    bare, basic = split_userinfo(raw)
    parts = urlsplit(bare)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))
    return PollTarget(name=DEFAULT_NAME, url=url, builtin=True, basic_auth=basic)
