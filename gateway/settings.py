"""Gateway settings: one strict model, four layers of sources.

Precedence (lowest first): built-in defaults < YAML/JSON file given with ``--config`` <
``MLSHARP_*`` environment variables < command-line flags. Unknown keys and invalid values stop
start-up with :class:`SettingsError`, whose message names the key, instead of being ignored the
way a mistyped ``--config`` key used to fall back to defaults in silence.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "MLSHARP_"
Scope = Literal["predict", "admin"]

#: keys of the older config-file format that still mean something, mapped to ours
LEGACY_KEY_ALIASES: dict[str, str] = {
    "triton_grpc_url": "triton_url",
    "max_file_size": "upload_max_bytes",
    "output_dir": "results_dir",
    "cors_origins": "cors_allow_origins",
}


#: minimum HMAC secret length per JWT algorithm (the hash output size)
JWT_MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


class SettingsError(ValueError):
    """A setting is unknown or invalid; the message names the key and says why."""


class ApiKey(BaseModel):
    """One API key, stored only as the hex SHA-256 of the key so a leaked config leaks no key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[Scope, ...] = ("predict",)
    #: requests per minute for this key; None uses ``rate_limit_per_minute``
    rate_per_minute: float | None = Field(default=None, ge=0)


class Settings(BaseSettings):
    """Every knob of the gateway. Field names are the config-file keys and, upper-cased with the
    ``MLSHARP_`` prefix, the environment variable names."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, case_sensitive=False
    )

    # server
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    root_path: str = ""
    public_base_url: str | None = None
    #: on SIGTERM: stop accepting, then finish what is in flight for up to this long (a request
    #: waits on Triton for up to triton_timeout_s; orchestrators allow this plus a margin)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    #: proxies whose X-Forwarded-For/-Proto are believed (client address, https links); "*" = any
    forwarded_allow_ips: str = "127.0.0.1"

    # inference backend
    backend: Literal["local", "triton"] = "local"
    #: comma-separated host:port list; a name (e.g. a headless Service) stands for every address
    #: it resolves to (A/AAAA), re-resolved every triton_resolve_interval_s; requests are spread
    #: over all of them (gateway/backends/endpoints.py)
    triton_url: str = "127.0.0.1:8001"
    triton_resolve_interval_s: float = Field(default=10.0, gt=0)
    triton_model: str = "mlsharp"
    triton_model_id: str | None = None
    #: one Triton's metrics (GPU facts); with several endpoints set triton_metrics_port instead
    triton_metrics_url: str | None = "http://127.0.0.1:8002/metrics"
    #: metrics port on every endpoint's host (http://<host>:<port>/metrics); overrides the URL
    triton_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    triton_timeout_s: float = Field(default=600.0, gt=0)
    triton_ready_timeout_s: float = Field(default=2.0, gt=0)
    triton_max_message_bytes: int = Field(default=1 << 30, ge=4 << 20, le=(1 << 31) - 1)
    local_preset: str = "full"
    local_checkpoint: Path | None = None
    local_random_weights: bool = False
    local_device: str = "cpu"
    local_download: bool = True

    # admission control (TEI-style): in-flight inferences and how many may wait for a slot.
    # None = from the served model: Triton's sharp max_batch_size x instances x 2 (one batch
    # runs while the next forms), 1 for the local backend (one network at a time)
    max_in_flight: int | None = Field(default=None, ge=1, le=1024)
    max_queue: int = Field(default=64, ge=0, le=100_000)
    retry_after_s: int = Field(default=5, ge=1, le=3600)

    # uploads
    upload_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    upload_max_pixels: int = Field(default=50_000_000, ge=1)
    job_max_files: int = Field(default=16, ge=1, le=1000)
    job_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    formats_default: tuple[str, ...] = ("ply",)

    # results and jobs
    results_dir: Path = Path("var/results")
    sqlite_path: Path | None = None
    #: shared state for several replicas: ``postgresql://user:password@host:5432/db`` holds jobs,
    #: file states, webhook registrations and the outbox (unset: the SQLite file above)
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=10, ge=1, le=200)
    #: this process's name on the job leases it holds (unset: host name, pid and a random suffix)
    replica_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:@-]{1,128}$")
    #: a job is claimed for this long and the claim renewed every third of it; a replica that dies
    #: holds its jobs at most this long before another resumes them
    job_lease_s: float = Field(default=30.0, ge=1.0, le=3600.0)
    #: how often idle workers look for claimable jobs and a running job re-reads its own row (a
    #: cancel made on another replica is seen within this); event streams poll at most every 0.5 s
    job_poll_s: float = Field(default=1.0, gt=0, le=30.0)
    results_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    sweep_interval_s: float = Field(default=300.0, gt=0)
    job_workers: int = Field(default=1, ge=1, le=64)
    job_max_queued: int = Field(default=100, ge=1)
    #: with auth on, the fraction of job_max_queued one principal may hold (at least one job)
    job_owner_share: float = Field(default=0.5, gt=0, le=1)

    # job renders (``render=true`` on POST /v1/jobs): per photo a still from the photo's camera
    # and an orbit video, rendered on this process's CPU after the scene is made
    #: frames of the orbit video (at render_fps; 60 frames = 2 s)
    render_frames: int = Field(default=60, ge=1, le=600)
    #: size of the still and the video, WIDTHxHEIGHT; even sides (H.264 in yuv420p needs them)
    render_size: str = Field(default="512x512", pattern=r"^[1-9][0-9]{0,3}x[1-9][0-9]{0,3}$")
    render_fps: int = Field(default=30, ge=1, le=120)

    # shared object storage
    #: where result files live: None = files under results_dir; "s3://bucket/prefix" = an
    #: S3-compatible bucket shared by every replica (s3_* below)
    object_store_url: str | None = Field(
        default=None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9_.!*'()/-]*)?$"
    )
    #: None = AWS; e.g. http://seaweedfs:8333 for SeaweedFS or MinIO
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    #: None = the standard AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profile, role)
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_addressing_style: Literal["path", "virtual", "auto"] = "path"
    #: create the bucket at start-up when it does not exist (else a missing bucket stops start-up)
    s3_create_bucket: bool = False
    #: "proxy" streams downloads through the gateway; "presigned" answers 307 to a presigned URL
    #: of the object store (local files have none and are always proxied)
    download_mode: Literal["proxy", "presigned"] = "proxy"
    presigned_url_ttl_s: float = Field(default=900.0, ge=1, le=7 * 24 * 3600)
    #: bound on all stored bytes (inputs, results, archives, cached scenes); over it, the sweep
    #: evicts unreferenced scenes, then ended tasks and jobs oldest-finished first
    results_max_bytes: int = Field(default=20 * 1024**3, ge=1024 * 1024)

    # cache
    cache_enabled: bool = True
    #: with auth on, cache entries are per owner: a hit never tells you what another user uploaded
    cache_per_owner: bool = True
    cache_max_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    cache_max_entries: int = Field(default=100, ge=1)
    cache_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    redis_url: SecretStr | None = None
    redis_timeout_s: float = Field(default=1.0, gt=0)
    redis_prefix: str = Field(default="mlsharp:v1:", pattern=r"^[A-Za-z0-9:_.-]{1,64}$")

    # auth and rate limits
    auth_enabled: bool = False
    api_keys: tuple[ApiKey, ...] = ()
    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_audience: str | None = None
    #: tokens whose exp lies further ahead (or exp - iat is longer) are refused
    jwt_max_lifetime_s: float = Field(default=24 * 3600.0, gt=0)
    rate_limit_per_minute: float = Field(default=0.0, ge=0)
    rate_limit_burst: int = Field(default=10, ge=1)
    #: Redis for limits shared by all replicas (token buckets, admission leases); unset: each
    #: replica limits alone. Must never evict (maxmemory-policy noeviction) or a separate instance:
    #: NOT the cache's LRU Redis (a DB number does not help: the policy is per server)
    limits_redis_url: SecretStr | None = None
    limits_redis_prefix: str = Field(default="mlsharp:limits:v1:", pattern=r"^[A-Za-z0-9:_.-]{1,64}$")
    limits_redis_timeout_s: float = Field(default=0.25, gt=0)
    #: after a Redis failure, limits are per replica (in-process) for this long before Redis is tried again
    limits_redis_retry_s: float = Field(default=5.0, gt=0)
    #: a shared admission slot of a replica that stops heartbeating is freed after this long
    limits_lease_s: float = Field(default=30.0, ge=0.3, le=3600)

    # webhooks
    webhooks_enabled: bool = True
    webhook_allow_hosts: tuple[str, ...] = ()
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_backoff_s: float = Field(default=2.0, gt=0)
    webhook_backoff_max_s: float = Field(default=600.0, gt=0)
    #: derives the per-hook signing secrets (none is stored); unset: a 0600 key file by the database
    webhook_secret_key: SecretStr | None = Field(default=None, min_length=32)
    #: deliveries in flight at once, in total and per owner (one slow receiver stalls only its owner)
    webhook_concurrency: int = Field(default=32, ge=1, le=1024)
    webhook_owner_concurrency: int = Field(default=2, ge=1, le=64)

    # logs and http
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: Path | None = None
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    log_backups: int = Field(default=5, ge=0, le=100)
    cors_allow_origins: tuple[str, ...] = ()
    docs_enabled: bool = True

    @field_validator(
        "database_url",
        "object_store_url",
        "s3_endpoint_url",
        "s3_access_key_id",
        "s3_secret_access_key",
        "limits_redis_url",
        "redis_url",
        "webhook_secret_key",
        "triton_metrics_url",
        "public_base_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """``MLSHARP_DATABASE_URL=`` (compose passes every variable, set or not) means unset."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("formats_default")
    @classmethod
    def _known_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from gateway.formats import known_formats

        unknown = [fmt for fmt in value if fmt not in known_formats()]
        if unknown or not value:
            raise ValueError(f"unknown output format(s) {unknown}; choose from {list(known_formats())}")
        return value

    @field_validator("render_size")
    @classmethod
    def _even_render_size(cls, value: str) -> str:
        width, height = (int(side) for side in value.split("x"))
        if width % 2 or height % 2:
            raise ValueError(f"width and height must be even for H.264 video, got {value}")
        return value

    @field_validator("triton_url")
    @classmethod
    def _valid_triton_targets(cls, value: str) -> str:
        from gateway.backends.endpoints import parse_targets

        parse_targets(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _valid_allow_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from gateway.service.ssrf import parse_allow_list

        parse_allow_list(value)  # raises ValueError naming the bad entry
        return value

    @model_validator(mode="after")
    def _jwt_secret_long_enough(self) -> Settings:
        """RFC 7518 3.2: an HMAC key at least as long as the hash output (32/48/64 bytes)."""
        needed = JWT_MIN_SECRET_BYTES[self.jwt_algorithm]
        if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value().encode()) < needed:
            raise ValueError(f"jwt_secret must be at least {needed} bytes for {self.jwt_algorithm}")
        return self

    @model_validator(mode="after")
    def _replicas_share_the_webhook_key(self) -> Settings:
        """With a shared database every replica signs the same registrations: a key file made
        by each replica on its own disk would give receivers a different secret per replica."""
        if self.database_url is not None and self.webhooks_enabled and self.webhook_secret_key is None:
            raise ValueError(
                "database_url is set (several replicas share the jobs): set webhook_secret_key too, "
                "the same on every replica, or set webhooks_enabled=false"
            )
        return self

    @property
    def database_path(self) -> Path:
        """SQLite file; next to the results unless configured, so one volume holds both."""
        return self.sqlite_path or self.results_dir / "gateway.sqlite3"

    #: the parsed ``--config`` file; load_settings() sets it on a one-off subclass
    config_file_data: ClassVar[dict[str, Any]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: init kwargs (the CLI flags) > MLSHARP_* environment > config file > defaults.
        return (init_settings, env_settings, InitSettingsSource(settings_cls, cls.config_file_data))


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML or JSON config file into a flat mapping of our keys (seed aliases applied)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(f"cannot read config file {path}: {error.strerror or error}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise SettingsError(f"config file {path} is not valid YAML/JSON: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping of setting: value")
    result: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).strip().lower().replace("-", "_")
        if name == "no_cache":  # the older format's negative flag
            result["cache_enabled"] = not bool(value)
            continue
        result[LEGACY_KEY_ALIASES.get(name, name)] = value
    return result


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        env = ENV_PREFIX + re.sub(r"\..*", "", key).upper()
        if not key:  # a rule across several keys: its message names them
            lines.append(f"invalid settings: {item['msg'].removeprefix('Value error, ')}")
        elif item["type"] == "extra_forbidden":
            lines.append(f"unknown setting {key!r} (no such key; env {env})")
        else:
            lines.append(f"invalid setting {key!r} (env {env}): {item['msg']}")
    return "; ".join(lines)


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build settings from all four layers; raise SettingsError naming the offending key."""
    file_data = read_config_file(config_file) if config_file is not None else {}
    layered = type("LayeredSettings", (Settings,), {"config_file_data": file_data})
    try:
        # Re-validate as the plain class so callers get a Settings, not the one-off subclass.
        return Settings.model_validate(layered(**(overrides or {})).model_dump())
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
