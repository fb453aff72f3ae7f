"""Configuration from the environment, every variable prefixed `TALLY_` (see README)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Scope = Literal["read", "write", "admin"]


class TokenGrant(BaseModel):
    """What one bearer token may do: scopes, and optionally only names under a prefix."""

    scopes: list[Scope]
    prefix: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    redis_url: str | None = None
    redis_cluster: bool = False
    redis_timeout_seconds: float = Field(5.0, gt=0)
    tokens: dict[str, TokenGrant] = Field(default_factory=dict)
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    max_batch_elements: int = Field(2_097_152, gt=0)  # array elements per update/merge, all arrays
    history_limit: int = Field(1000, gt=0)
    idempotency_ttl_seconds: float = Field(24 * 3600, gt=0)
    max_ttl_seconds: int = Field(365 * 24 * 3600, gt=0)
    plugins: str = ""  # comma-separated module names of metric plugins
    max_state_elements: int = Field(4_194_304, gt=0)
    max_idempotency_keys: int = Field(100_000, gt=0)
    metric_cache_bytes: int = Field(256 * 1024 * 1024, ge=0)
    worker_threads: int = Field(2, ge=1, le=64)
    redis_replica_acks: int = Field(0, ge=0, le=16)
    redis_replica_timeout_seconds: float = Field(1.0, gt=0)

    def plugin_modules(self) -> list[str]:
        return [m.strip() for m in self.plugins.split(",") if m.strip()]
