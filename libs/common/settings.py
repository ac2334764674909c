"""Settings fragments. Each service composes the fragments it needs.

Every field reads from the environment with the ``RAPPORT_`` prefix (for example
``RAPPORT_DATABASE_URL``). Fragments are plain pydantic-settings classes so tests build them
with explicit values instead of patching globals.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# hide_input_in_errors: a refused setting must not print the raw inputs (secrets, database
# passwords) into the startup log.
_COMMON = SettingsConfigDict(
    env_prefix="RAPPORT_", extra="ignore", env_file=None, hide_input_in_errors=True
)

DEFAULT_DEV_JWT_SECRET = "rapport-dev-secret-change-me-never-use-in-production"  # noqa: S105 - refused when auth is on


class PostgresSettings(BaseSettings):
    """Connection to the Postgres that holds all durable state."""

    model_config = _COMMON

    database_url: str = Field(
        default="postgresql+psycopg://rapport@127.0.0.1:54320/rapport",
        description="SQLAlchemy URL (psycopg 3 driver) of the Rapport database.",
    )
    db_pool_size: int = Field(default=10, ge=1, description="Connections kept in the pool.")
    db_max_overflow: int = Field(
        default=10, ge=0, description="Extra connections allowed above the pool size."
    )
    db_pool_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a pooled connection before failing."
    )
    db_statement_timeout_ms: int = Field(
        default=30_000, ge=0, description="Server-side statement timeout (0 disables it)."
    )


class NatsSettings(BaseSettings):
    """NATS JetStream connection and stream layout."""

    model_config = _COMMON

    nats_url: str = Field(
        default="nats://127.0.0.1:4222", description="NATS server URL(s), comma separated."
    )
    nats_stream: str = Field(
        default="RAPPORT_EVENTS", description="JetStream stream holding every domain event."
    )
    nats_subject_prefix: str = Field(
        default="rapport",
        description="First subject token of every event; lets several installs share a server.",
    )
    nats_stream_replicas: int = Field(
        default=1, ge=1, le=5, description="Stream replicas (3 on a NATS cluster)."
    )
    nats_duplicate_window_s: float = Field(
        default=600.0,
        gt=0,
        description="JetStream de-duplication window for Nats-Msg-Id (seconds).",
    )
    nats_stream_max_age_days: float = Field(
        default=14.0, gt=0, description="Events older than this are dropped from the stream."
    )


class OutboxSettings(BaseSettings):
    """The transactional outbox relay (Postgres → JetStream)."""

    model_config = _COMMON

    outbox_relay_enabled: bool = Field(
        default=True, description="Run the outbox relay in this process (ingest and all-in-one)."
    )
    outbox_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Outbox rows read per relay round."
    )
    outbox_poll_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="Fallback poll interval; commits also wake the relay via LISTEN/NOTIFY.",
    )
    outbox_retry_max_s: float = Field(
        default=5.0, gt=0, description="Upper bound of the back-off while NATS is unreachable."
    )
    outbox_max_backlog: int = Field(
        default=500_000,
        ge=0,
        description="New message batches are refused with 503 + Retry-After while more outbox "
        "rows than this wait to be published (NATS down for long); 0 disables the bound.",
    )
    outbox_retention_s: float = Field(
        default=3600.0,
        ge=0,
        description="Published outbox rows are deleted after this many seconds.",
    )


class AuthSettings(BaseSettings):
    """HS256 JWT authentication (Honcho-compatible claims)."""

    model_config = _COMMON

    auth_enabled: bool = Field(default=False, description="Require a JWT on every /v3 route.")
    jwt_secret: SecretStr = Field(
        default=SecretStr(DEFAULT_DEV_JWT_SECRET),
        description="HS256 signing secret; must be set (≥ 32 chars) when auth is enabled.",
    )

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> AuthSettings:
        secret = self.jwt_secret.get_secret_value()
        if self.auth_enabled and (secret == DEFAULT_DEV_JWT_SECRET or len(secret) < 32):
            raise ValueError(
                "RAPPORT_JWT_SECRET must be set to a random value of at least 32 characters "
                "when RAPPORT_AUTH_ENABLED is true"
            )
        return self


class LimitsSettings(BaseSettings):
    """Input limits enforced by the HTTP services."""

    model_config = _COMMON

    max_message_chars: int = Field(
        default=25_000, ge=1, description="Maximum characters of one message's content."
    )
    max_messages_per_batch: int = Field(
        default=100, ge=1, le=1000, description="Maximum messages in one POST."
    )
    max_upload_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="Maximum size of an uploaded file."
    )
    max_request_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Maximum size of a JSON request body."
    )
    admission_enabled: bool = Field(
        default=True,
        description="Admission control: bound the requests in flight per process and answer 503 "
        "with Retry-After past that (/health and /metrics are never refused).",
    )
    max_inflight_writes: int = Field(
        default=16,
        ge=1,
        le=10_000,
        description="Requests that change state (message batches, uploads, updates, deletes) "
        "running at once per process; keep at or below the database pool "
        "(RAPPORT_DB_POOL_SIZE + RAPPORT_DB_MAX_OVERFLOW).",
    )
    max_queued_writes: int = Field(
        default=64,
        ge=0,
        le=100_000,
        description="State-changing requests allowed to wait for a slot; one more is refused "
        "at once with 503.",
    )
    max_inflight_reads: int = Field(
        default=16,
        ge=1,
        le=10_000,
        description="Reads (GET, lists, search, chat, context) running at once per process; a "
        "budget of their own so a write burst never starves them.",
    )
    max_queued_reads: int = Field(
        default=64,
        ge=0,
        le=100_000,
        description="Reads allowed to wait for a slot; one more is refused at once with 503.",
    )
    admission_queue_timeout_s: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="Longest wait for a slot before a queued request is refused with 503; keep "
        "well below client timeouts.",
    )
    overload_retry_after_s: int = Field(
        default=1,
        ge=1,
        le=3600,
        description="Seconds sent in Retry-After when a request is refused for overload.",
    )


class WebhookSettings(BaseSettings):
    """Webhook registration policy and delivery."""

    model_config = _COMMON

    webhook_secret: SecretStr = Field(
        default=SecretStr(""),
        description="HMAC-SHA256 key of the X-Honcho-Signature header on webhook deliveries "
        "(unset: deliveries are unsigned).",
    )
    allow_private_webhook_urls: bool = Field(
        default=False,
        description="Allow webhook URLs that resolve to private, loopback or link-local hosts.",
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="Timeout of one webhook delivery attempt."
    )


class TelemetrySettings(BaseSettings):
    """Tracing, metrics and logs."""

    model_config = _COMMON

    service_name: str = Field(default="rapport", description="service.name of traces and logs.")
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector endpoint (e.g. http://otel-collector:4318); off if unset.",
    )
    log_level: str = Field(default="INFO", description="Root log level.")
    log_json: bool = Field(default=True, description="Emit structured JSON logs.")


class HttpSettings(BaseSettings):
    """Where an HTTP service listens."""

    model_config = _COMMON

    host: str = Field(default="127.0.0.1", description="Bind address.")
    port: int = Field(default=8000, ge=1, le=65535, description="Bind port.")
    shutdown_grace_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="On SIGTERM, seconds in-flight requests (streamed chats, large batches) get "
        "to finish after the listener closes.",
    )
    http_keep_alive_s: int = Field(
        default=75,
        ge=1,
        le=3600,
        description="Seconds an idle keep-alive connection stays open. Longer than clients' own "
        "idle expiry (httpx: 5 s) and load balancers' idle timeouts (often 60 s), so the client "
        "side closes first and no request races the server closing its connection.",
    )


class LLMSettings(BaseSettings):
    """An OpenAI-compatible LLM endpoint for the reasoner (unset: the extractive reasoner)."""

    model_config = _COMMON

    llm_base_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible API (e.g. http://localhost:11434/v1); "
        "unset means no LLM: the extractive reasoner is used.",
    )
    llm_api_key: SecretStr = Field(
        default=SecretStr("not-needed"), description="API key sent as a Bearer token."
    )
    llm_model: str = Field(default="gpt-4o-mini", description="Default model for every task.")
    llm_extraction_model: str | None = Field(
        default=None, description="Model for observation extraction (defaults to llm_model)."
    )
    llm_summary_model: str | None = Field(
        default=None, description="Model for summaries (defaults to llm_model)."
    )
    llm_dream_model: str | None = Field(
        default=None, description="Model for dreams / peer cards (defaults to llm_model)."
    )
    llm_dialectic_model: str | None = Field(
        default=None, description="Model for the dialectic (defaults to llm_model)."
    )
    llm_timeout_s: float = Field(default=60.0, gt=0, description="Per-request timeout.")
    llm_max_retries: int = Field(
        default=4, ge=0, le=20, description="Retries on 429, 5xx and timeouts (with back-off)."
    )
    llm_structured_output: str = Field(
        default="auto",
        description="'json_schema', 'json_object' or 'auto' (schema first, then JSON mode + "
        "repair for providers that ignore or reject schemas).",
    )
    llm_temperature: float = Field(default=0.0, ge=0, le=2, description="Sampling temperature.")
    llm_custom_instructions: str | None = Field(
        default=None, description="Extra instructions appended to every reasoning prompt."
    )


class EmbedderSettings(BaseSettings):
    """Sentence embeddings: the bundled local ONNX model, or an OpenAI-compatible endpoint."""

    model_config = _COMMON

    embedder: str = Field(
        default="local", description="'local' (bundled ONNX all-MiniLM-L6-v2) or 'openai'."
    )
    embedding_base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible embeddings API."
    )
    embedding_api_key: SecretStr = Field(
        default=SecretStr("not-needed"), description="API key for the embeddings API."
    )
    embedding_model: str = Field(default="all-MiniLM-L6-v2", description="Embedding model name.")
    embedding_dimensions: int = Field(
        default=384, ge=8, le=8192, description="Vector dimensions of the embedding model."
    )
    embedding_batch_size: int = Field(
        default=32, ge=1, le=2048, description="Texts per embedding call."
    )


class VectorStoreSettings(BaseSettings):
    """Where vectors live: pgvector in the same Postgres (default) or Qdrant."""

    model_config = _COMMON

    vector_store: str = Field(default="pgvector", description="'pgvector' or 'qdrant'.")
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL (e.g. http://qdrant:6333)."
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="Qdrant API key.")
    qdrant_path: str | None = Field(
        default=None,
        description="Local-mode Qdrant directory (single process only; tests and demos).",
    )
    vector_namespace: str = Field(
        default="rapport", description="Prefix of collection / table names."
    )


class ConsoleSettings(BaseSettings):
    """The web console at ``/console`` (a backend-for-frontend over the public v3 API)."""

    model_config = _COMMON

    console_enabled: bool = Field(
        default=True, description="Serve the web console at /console (all-in-one process)."
    )
    console_api_url: str | None = Field(
        default=None,
        description="Base URL of the v3 API the console calls with the user's key (unset in the "
        "all-in-one process: its own port on loopback). Required by `python -m services.console`.",
    )
    console_context_url: str | None = Field(
        default=None,
        description="Base URL of the context service for the console's context routes (views, "
        "get_context, cards, search), when no gateway routes them (unset: the API URL).",
    )
    console_dialectic_url: str | None = Field(
        default=None,
        description="Base URL of the dialectic service for the console's chat (unset: the API "
        "URL).",
    )
    console_api_timeout_s: float = Field(
        default=60.0, gt=0, le=600, description="Timeout of one console → API call."
    )
