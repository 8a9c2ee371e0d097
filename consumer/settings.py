"""Settings: one frozen, typed object built once from the environment and a TOML file (spec §6).

Names are flat and match the environment variables users type (``TRIGGER_CONSUMER_`` +
the field name in upper case). Secrets are ``SecretStr`` and may also come from a file
named by the ``..._FILE`` variant. Only this module reads ``os.environ``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from consumer.durations import parse_duration
from consumer.errors import ConfigError
from consumer.flow.config import DEFAULT_MAX_DEFERRED, DagLimit
from consumer.health import DEFAULT_HOST
from consumer.limits import (
    DEFAULT_MAX_CONF_BYTES,
    DEFAULT_MAX_CONF_DEPTH,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_NOT_BEFORE,
)
from consumer.routes.config import RouteTable, TopicOptions
from consumer.store.redaction import display_url

ENV_PREFIX = "TRIGGER_CONSUMER_"
# Variables of the test harness (e.g. TRIGGER_CONSUMER_TEST_KAFKA_BOOTSTRAP), not settings;
# the fault hook TEST_CRASH_AT is a setting, so a typo in its name is still caught.
RESERVED_PREFIXES = (f"{ENV_PREFIX}TEST_KAFKA_",)
SECRET_FIELDS = ("kafka_sasl_password", "airflow_password", "airflow_token", "store_password")
REREAD_FILES = frozenset({"airflow_token"})


def json_array(value: Any) -> Any:
    """Read a JSON array given as text (an environment variable); TOML arrays pass through."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ValueError(f"not a JSON array: {exc}") from None


def split_commas(value: Any) -> Any:
    """Turn ``"a, b,c"`` into ``("a", "b", "c")``; lists from TOML pass through."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(split_commas)]


class Settings(BaseSettings):
    """Every setting of the worker; ``trigger-consumer run --help`` lists them."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", case_sensitive=False
    )

    # Kafka
    kafka_bootstrap_servers: str = Field("localhost:9092", description="Kafka brokers")
    kafka_group_id: str = Field("airflow-trigger-consumer", description="consumer group")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (or _FILE)")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for the Kafka brokers")
    request_topic: str = Field("dag-trigger-requests", description="topic of trigger requests")
    reply_topic: str = Field("dag-trigger-replies", description="default topic of replies")
    dlq_topic: str = Field("dag-trigger-dlq", description="dead-letter topic")
    reply_topic_allowlist: CommaList = Field(
        (), description="extra topics a request may name in reply_topic (comma-separated)"
    )
    # Policy
    dag_allowlist: CommaList = Field(
        (), description="comma-separated glob patterns of DAGs that may be triggered ('*': all)"
    )
    rerun_dag_allowlist: CommaList = Field(
        (),
        description="glob patterns of DAGs whose runs a request with `rerun` may clear and "
        "re-run (default: none)",
    )
    # Airflow
    airflow_url: str = Field("http://localhost:8080", description="Airflow base URL")
    airflow_api_version: Literal["auto", "v1", "v2"] = Field("auto", description="REST API")
    airflow_username: str | None = Field(None, description="basic auth (v1) or JWT login (v2)")
    airflow_password: SecretStr | None = Field(None, description="Airflow password (or _FILE)")
    airflow_token: SecretStr | None = Field(None, description="static bearer token (or _FILE)")
    airflow_token_file: Path | None = Field(
        None, description="bearer token file, re-read whenever it changes (Astronomer)"
    )
    airflow_auth: Literal["auto", "mwaa", "google"] = Field(
        "auto",
        description="auto: the credentials given (user/password, token, none); mwaa: Amazon "
        "MWAA's InvokeRestApi with AWS credentials; google: Cloud Composer with Google's",
    )
    mwaa_environment: str | None = Field(None, description="MWAA environment name (auth mwaa)")
    airflow_ca_bundle: Path | None = Field(None, description="CA bundle for HTTPS to Airflow")
    airflow_connect_timeout: Duration = Field(timedelta(seconds=5), description="connect timeout")
    airflow_read_timeout: Duration = Field(timedelta(seconds=30), description="read timeout")
    airflow_concurrency: Literal["adaptive", "fixed"] = Field(
        "adaptive",
        description="adaptive: start at 4 concurrent Airflow calls and follow Airflow's "
        "latency and errors up to airflow_max_concurrency; fixed: always that maximum",
    )
    airflow_max_concurrency: int = Field(
        8,
        ge=1,
        le=256,
        description="most concurrent Airflow calls; the limit itself when fixed "
        "(Airflow 3 collapses past ~24)",
    )
    airflow_retry_budget: Duration = Field(
        timedelta(minutes=2), description="how long one request retries while Airflow answers"
    )
    # Store and limits
    store_url: str = Field(
        "sqlite:///./trigger-consumer.db",
        description="idempotency store: sqlite:///path.db (one replica) or postgresql://… "
        "(shared by replicas; TLS as libpq's sslmode, sslrootcert, sslcert, sslkey)",
    )
    store_password: SecretStr | None = Field(
        None, description="PostgreSQL store password (or _FILE), kept out of the URL"
    )
    dedup_retention: Duration = Field(timedelta(days=7), description="how long keys are kept")
    max_in_flight: int = Field(64, ge=1, le=4096, description="concurrent requests in flight")
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES, ge=1, description="largest message value"
    )
    max_conf_bytes: int = Field(DEFAULT_MAX_CONF_BYTES, ge=2, description="largest serialized conf")
    max_conf_depth: int = Field(
        DEFAULT_MAX_CONF_DEPTH, ge=1, le=1000, description="deepest nesting of conf"
    )
    shutdown_timeout: Duration = Field(
        timedelta(seconds=30), description="how long SIGTERM waits for in-flight work"
    )
    # Completion tracking (requests with "track": true)
    track_poll_interval: Duration = Field(
        timedelta(seconds=5), description="first wait between checks of a tracked run"
    )
    track_horizon: Duration = Field(
        timedelta(hours=24), description="how long a tracked run is watched before giving up"
    )
    track_concurrency: int = Field(4, ge=1, le=64, description="concurrent tracking checks")
    test_crash_at: Literal["after_trigger", "after_clear", "after_reply"] | None = Field(
        None, description="test-only fault hook: exit abruptly at this point (never in production)"
    )
    # Routes (spec §8): events that are not requests, mapped by [[routes]] in the config file
    routes: Annotated[RouteTable, NoDecode] = Field(
        RouteTable(), description="[[routes]] tables (config file; env: a JSON array)"
    )
    route_topics: dict[str, TopicOptions] = Field(
        {}, description='per route topic: unmatched = "dead_letter" | "ignore"'
    )
    trace_context: bool = Field(
        True, description="carry a W3C traceparent into the run's conf and the reply headers"
    )
    # Flow control (issue 30): per-DAG limits by [[dag_limits]] in the config file
    dag_limits: Annotated[tuple[DagLimit, ...], NoDecode, BeforeValidator(json_array)] = Field(
        (), description="[[dag_limits]] tables (config file; env: a JSON array)"
    )
    airflow_max_queued_runs: int | None = Field(
        None, ge=1, description="queued runs of every DAG together (default: no bound)"
    )
    max_deferred: int = Field(
        DEFAULT_MAX_DEFERRED, ge=1, description="deferred requests per store before fetching stops"
    )
    max_not_before: Duration = Field(
        DEFAULT_MAX_NOT_BEFORE, description="how far ahead a request's not_before may be"
    )
    # Operations
    http_port: int = Field(9464, ge=0, le=65535, description="metrics and health (0 = off)")
    http_host: str = Field(DEFAULT_HOST, description="address of the metrics/health server")
    config_file: Path | None = Field(None, description="optional TOML config file")
    log_format: Literal["auto", "json", "console"] = Field("auto", description="log format")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="level")

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        """The fields as ``repr`` and ``str`` show them: the store URL's passwords masked."""
        for name, value in super().__repr_args__():
            yield name, display_url(value) if name == "store_url" else value

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        """Fill ``x`` from the file named by ``x_file`` (env or TOML) when ``x`` is unset."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in SECRET_FIELDS:
            reread = name in REREAD_FILES  # the client re-reads it when it changes: kept too
            path = data.get(f"{name}_file") if reread else data.pop(f"{name}_file", None)
            if path and reread and data.get(name):
                raise ValueError(f"give {name} or {name}_file, not both")
            if path and not data.get(name):
                try:
                    data[name] = Path(path).read_text().rstrip("\r\n")
                except OSError as exc:
                    raise ValueError(f"{name}_file: cannot read {path}: {exc.strerror}") from exc
        return data

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.airflow_password is not None and self.airflow_username is None:
            raise ValueError("airflow_password needs airflow_username")
        self._check_airflow_auth()
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"{self.kafka_security_protocol} needs kafka_sasl_mechanism, "
                "kafka_sasl_username and kafka_sasl_password"
            )
        return self._check_routes()

    def _check_airflow_auth(self) -> None:
        given = [
            name
            for name in ("airflow_username", "airflow_password", "airflow_token")
            if getattr(self, name) is not None
        ]
        if self.airflow_auth == "auto":
            if self.mwaa_environment is not None:
                raise ValueError("mwaa_environment needs airflow_auth=mwaa")
            return
        if given:  # the managed service's own credentials replace Airflow's
            raise ValueError(f"airflow_auth={self.airflow_auth} takes no {', '.join(given)}")
        if self.airflow_auth == "mwaa" and not self.mwaa_environment:
            raise ValueError("airflow_auth=mwaa needs mwaa_environment (the environment's name)")
        if self.airflow_auth == "mwaa" and "airflow_url" not in self.model_fields_set:
            # calls go through AWS's API; the URL only makes the run links of replies right
            raise ValueError(
                "airflow_auth=mwaa needs airflow_url: the environment's web server URL "
                "(GetEnvironment's WebserverUrl), for the runs' links in replies"
            )

    def _check_routes(self) -> Settings:
        topics = self.routes.topics()
        if self.request_topic in topics:
            raise ValueError(
                f"routes: the request topic {self.request_topic!r} cannot be a route topic"
            )
        stray = sorted(set(self.route_topics) - set(topics))
        if stray:
            raise ValueError(f"route_topics: no route reads {', '.join(stray)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments, then the environment, then the TOML file: env wins over file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _config_file_from(init_settings, env_settings)
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def _config_file_from(*sources: PydanticBaseSettingsSource) -> Path | None:
    for source in sources:
        value = source().get("config_file")
        if value:
            return Path(value)
    return None


def _file_variants() -> set[str]:
    return {f"{ENV_PREFIX}{name.upper()}_FILE" for name in SECRET_FIELDS}


def known_variables() -> set[str]:
    """Every environment variable name the settings accept."""
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    return fields | _file_variants()


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """``TRIGGER_CONSUMER_*`` variables that are no setting (typos must not pass silently)."""
    names = (environ if environ is not None else os.environ).keys()
    known = known_variables()
    return sorted(
        name
        for name in names
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in known
        and not name.upper().startswith(RESERVED_PREFIXES)
    )


# Settings without which `run` does not start (spec §5: no implicit "allow everything").
REQUIRED_FOR_RUN = ("dag_allowlist",)


def load_settings(
    config_file: Path | None = None, *, for_run: bool = False, **overrides: Any
) -> Settings:
    """Build the settings from ``overrides``, the environment and the TOML file.

    Args:
        config_file: a TOML file (``--config``); ``TRIGGER_CONSUMER_CONFIG_FILE`` otherwise.
        for_run: also require what the worker needs (``REQUIRED_FOR_RUN``).
        overrides: explicit values that win over everything (tests, CLI flags).

    Raises:
        ConfigError: naming every unknown variable, bad value or missing required setting.
    """
    unknown = unknown_variables()
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    # the env source only looks up fields; the *_FILE variants are passed in explicitly
    values: dict[str, Any] = {
        f"{name}_file": os.environ[f"{ENV_PREFIX}{name.upper()}_FILE"]
        for name in SECRET_FIELDS
        if f"{ENV_PREFIX}{name.upper()}_FILE" in os.environ
    }
    values.update(overrides)
    if config_file is not None:
        values["config_file"] = config_file
    problem: str | None = None
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problem = describe_validation_error(exc)
    if problem is not None:
        # raised outside the except block: pydantic's error holds the input values (secrets)
        # and must not ride along as the exception's context
        raise ConfigError(problem)
    missing = [name for name in REQUIRED_FOR_RUN if for_run and not getattr(settings, name)]
    if missing:
        names = ", ".join(f"{ENV_PREFIX}{name.upper()}" for name in missing)
        raise ConfigError(f"{names}: required (write '*' to allow every DAG)")
    return settings


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the environment variable; never echoes a value."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        lines.append(f"{name}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(lines)


def describe_settings() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, for ``run --help``."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = "required" if name in REQUIRED_FOR_RUN else repr(field.get_default())
        if isinstance(field.get_default(), timedelta):
            default = f"{field.get_default().total_seconds():g}s"
        variable = f"{ENV_PREFIX}{name.upper()}"
        if name in SECRET_FIELDS:
            variable += "[_FILE]"
        rows.append((variable, default, field.description or ""))
    return rows


def env_name(field: str) -> str:
    """The environment variable of a setting.

    Args:
        field: a ``Settings`` field name, like ``request_topic``.

    Returns:
        Like ``TRIGGER_CONSUMER_REQUEST_TOPIC``.
    """
    return f"{ENV_PREFIX}{field.upper()}"


def default_of(field: str) -> Any:
    """The default of a setting, for a module that Settings cannot import.

    A default lives in the module it governs, as a ``DEFAULT_…`` constant that Settings
    uses (``limits``, ``health``). A module that depends on Settings itself (the tracker
    imports ``consumer.airflow`` and ``kafka_io``, which import Settings) would make that an
    import cycle: its defaults stay here and it reads them through this function.

    Args:
        field: the Settings field name, like ``"max_message_bytes"``.

    Returns:
        The field's default value.
    """
    return Settings.model_fields[field].get_default()
