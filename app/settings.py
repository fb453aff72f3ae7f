"""Configuration from the environment, every variable prefixed `TALLY_` (see README)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Scope = Literal["read", "write", "admin"]
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class TokenGrant(BaseModel):
    """What one bearer token may do: scopes, and optionally only names under a prefix.

    A grant with no scope would let its token in and then allow nothing; an unknown key (a
    misspelt `prefix`) would silently widen the token to every session: both are refused."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[Scope] = Field(min_length=1)
    prefix: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    redis_url: str | None = None
    redis_cluster: bool = False
    redis_timeout_seconds: float = Field(5.0, gt=0)
    tokens: dict[str, TokenGrant] = Field(default_factory=dict)
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    max_batch_elements: int = Field(1_048_576, gt=0)  # array elements per update/merge, all arrays
    history_limit: int = Field(1000, gt=0)
    idempotency_ttl_seconds: float = Field(24 * 3600, gt=0)
    max_ttl_seconds: int = Field(365 * 24 * 3600, gt=0)
    plugins: str = ""  # comma-separated module names of metric plugins
    max_state_elements: int = Field(1_048_576, gt=0)
    max_idempotency_keys: int = Field(100_000, gt=0)
    metric_cache_bytes: int = Field(256 * 1024 * 1024, ge=0)
    worker_threads: int = Field(2, ge=1, le=64)
    redis_replica_acks: int = Field(0, ge=0, le=16)
    group_commit: int = Field(64, ge=1, le=1024)
    merge_updates: int = Field(64, ge=1, le=1024)  # updates computed as one batch (1: never)
    # Freed memory glibc's malloc keeps per arena for reuse (app/allocator.py; 0: its defaults)
    allocator_keep_bytes: int = Field(64 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024)
    redis_max_connections: int = Field(100, ge=1, le=10_000)
    redis_replica_timeout_seconds: float = Field(1.0, gt=0)
    metrics_max_sessions: int = Field(1000, ge=0)  # sessions exported by GET /metrics
    metrics_max_slice_series: int = Field(10_000, ge=0)  # slice results GET /metrics exports
    # Time windows: buckets per session, and the numbers its buckets may hold together
    # (buckets x state elements), checked at create and at a lazy metric's first batch (422).
    max_window_buckets: int = Field(1440, ge=1, le=100_000)
    max_window_elements: int = Field(4_194_304, gt=0)
    # Slices: distinct slice values a session may keep per epoch (create's slices.max at most
    # this); its states together are within max_state_elements.
    max_slices: int = Field(1000, ge=1, le=1_000_000)

    @field_validator("tokens")
    @classmethod
    def _tokens_are_bearer_values(cls, tokens: dict[str, TokenGrant]) -> dict[str, TokenGrant]:
        """A token is what follows `Bearer ` in a header: visible characters, no spaces."""
        for position, token in enumerate(tokens, 1):
            if not token or not token.isprintable() or any(c.isspace() for c in token):
                raise ValueError(f"token #{position} must be 1 or more visible characters "
                                 "without spaces")
        return tokens

    @field_validator("redis_url")
    @classmethod
    def _redis_url_has_a_scheme(cls, url: str | None) -> str | None:
        """An empty value counts as unset (the in-memory store), as it does in most tools."""
        if not url:
            return None
        if not url.startswith(REDIS_SCHEMES):
            raise ValueError(f"should be a URL starting with {', '.join(REDIS_SCHEMES)}")
        return url

    def plugin_modules(self) -> list[str]:
        return [m.strip() for m in self.plugins.split(",") if m.strip()]
