"""Pydantic models for `dbt_like_configs/`: the validated shape of every YAML file.

Every model forbids unknown keys so a typo fails loading instead of being silently ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# What Dagster takes as an owner: an email address or `team:<name>`.
_OWNER_RE = re.compile(r"^(team:\S+|[^@\s]+@[^@\s]+\.[^@\s]+)$")
DEFAULT_INCLUDE = ["*.jpg", "*.jpeg", "*.png", "*.webp"]


def is_valid_cron(expr: str) -> bool:
    """A cron string Dagster schedules accept: five fields (or a macro such as `@daily`), and not
    a day that never comes (February 30/31)."""
    if not croniter.is_valid(expr):
        return False
    fields = croniter.expand(expr)[0]
    if len(fields) != 5:  # croniter also takes a seconds field; Dagster does not
        return False
    days, months = fields[2], fields[3]
    return not (list(months) == [2] and set(days) <= {30, 31})


def check_owners(owners: list[str]) -> list[str]:
    """Refuse at load time, naming the file and field, an owner Dagster would refuse later."""
    bad = [o for o in owners if not _OWNER_RE.match(o)]
    if bad:
        raise ValueError(f"owner {bad[0]!r} is not an email address or `team:<name>`")
    return owners


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sources


class LocalDirSource(StrictModel):
    type: Literal["local_dir"] = "local_dir"
    path: str
    include: list[str] = Field(default_factory=lambda: list(DEFAULT_INCLUDE))
    recursive: bool = True

    @field_validator("path")
    @classmethod
    def _not_a_system_root(cls, v: str) -> str:
        from flux_depth_assets.sources.roots import system_root_reason  # lazy: sources import us

        reason = system_root_reason(v)
        if reason:
            raise ValueError(f"refusing local_dir path: {reason}")
        return v


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class S3PrefixSource(StrictModel):
    """Objects under `s3://<bucket>/<prefix>/`; credentials and endpoint come from the environment
    (`AWS_*`, `AWS_ENDPOINT_URL_S3` for MinIO/moto), as boto3 and dagster-aws resolve them."""

    type: Literal["s3_prefix"] = "s3_prefix"
    bucket: str
    prefix: str = ""  # a folder: normalised to "a/b/" (no leading slash, one trailing slash)
    include: list[str] = Field(default_factory=lambda: list(DEFAULT_INCLUDE))

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, v: str) -> str:
        if v.startswith("s3://") or not _BUCKET_RE.match(v):
            raise ValueError(
                f"{v!r} is not an S3 bucket name (3-63 of a-z 0-9 . -; "
                "no s3:// scheme, the prefix goes in `prefix`)"
            )
        return v

    @field_validator("prefix")
    @classmethod
    def _folder_prefix(cls, v: str) -> str:
        v = v.strip().strip("/")
        if any(part in ("", ".", "..") for part in v.split("/")) and v:
            raise ValueError(f"prefix {v!r} has an empty, '.' or '..' segment")
        return f"{v}/" if v else ""


class UrlManifestSource(StrictModel):
    """A CSV or Parquet file listing image URLs (+ an optional external id per row)."""

    type: Literal["url_manifest"] = "url_manifest"
    path: str  # local path (relative to the project) or s3:// URI; .csv, .parquet or .pq
    format: Literal["auto", "csv", "parquet"] = "auto"  # auto: from the file extension
    url_column: str = "url"
    id_column: str | None = "external_id"  # used when the column exists
    timeout_s: float = Field(default=30.0, gt=0, le=600)  # whole download of one URL
    max_bytes: int = Field(default=50 * 1024 * 1024, gt=0, le=50 * 1024 * 1024)
    max_redirects: int = Field(default=5, ge=0, le=20)  # http(s) → http(s) only
    # Fetch URLs that resolve to loopback/private/link-local/... addresses (off: refused).
    allow_private_networks: bool = False
    max_rows: int = Field(default=100_000, ge=1, le=10_000_000)  # more: the listing fails

    @field_validator("path")
    @classmethod
    def _local_or_s3(cls, v: str) -> str:
        scheme = v.split("://", 1)[0].lower() if "://" in v else ""
        if scheme not in ("", "file", "s3"):
            raise ValueError(
                f"manifest path scheme {scheme!r} is not supported "
                "(a local path or s3://bucket/key)"
            )
        return v

    @model_validator(mode="after")
    def _known_format(self) -> UrlManifestSource:
        if self.format == "auto" and not self.path.lower().endswith((".csv", ".parquet", ".pq")):
            raise ValueError(
                f"cannot tell the manifest format of {self.path!r} from its extension; "
                "use .csv/.parquet or set `format: csv|parquet`"
            )
        return self


SourceConfig = Annotated[
    LocalDirSource | S3PrefixSource | UrlManifestSource, Field(discriminator="type")
]


# --------------------------------------------------------------------------- providers


class LocalProviderConfig(StrictModel):
    """The embedded, offline, deterministic estimator."""

    name: Literal["local"] = "local"
    model: str = "local-monocular-cues"
    max_side: int = Field(default=1024, ge=64, le=8192)
    price_usd: float = Field(default=0.0, ge=0)


class EachlabsParams(StrictModel):
    """Model inputs sent to the host, validated with the host's documented ranges."""

    prompt: str = ""
    steps: int = Field(default=50, ge=15, le=50)
    guidance: float = Field(default=15, ge=1, le=100)
    safety_tolerance: int = Field(default=2, ge=1, le=6)
    output_format: Literal["jpg", "png"] = "png"
    seed: int | None = None
    prompt_upsampling: bool = False


class EachlabsProviderConfig(StrictModel):
    """The hosted flux-depth-pro model on Eachlabs (or anything speaking its protocol)."""

    name: Literal["eachlabs"] = "eachlabs"
    mode: Literal["depth", "render"] = "depth"
    model: str = "flux-depth-pro"
    version: str = "0.0.1"
    base_url: str = "https://api.eachlabs.ai"
    max_concurrency: int = Field(default=8, ge=1, le=512)
    requests_per_second: float | None = Field(default=None, gt=0)
    poll_interval_s: float = Field(default=2.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)  # one HTTP request
    prediction_deadline_s: float = Field(default=600.0, gt=0)  # create → success
    max_retries: int = Field(default=5, ge=0, le=20)
    price_usd: float = Field(default=0.05, ge=0)
    image_transport: Literal["data_uri", "source_url"] = "data_uri"
    params: EachlabsParams = Field(default_factory=EachlabsParams)

    @field_validator("base_url")
    @classmethod
    def _http_only(cls, v: str) -> str:
        if not re.match(r"^https?://", v):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/")


HostName = Literal["eachlabs", "replicate", "bfl"]  # = providers.hosts.HOST_NAMES (tested)
_ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class HostEntry(StrictModel):
    """One host in a hosted provider's list; what is left unset comes from the host's adapter
    (its base URL, key variable, model name, price and published limits). A bare name is enough:
    `hosts: [replicate, eachlabs]`."""

    name: HostName
    base_url: str | None = None
    api_key_env: str | None = None  # default: EACHLABS_API_KEY / REPLICATE_API_TOKEN / BFL_API_KEY
    base_url_env: str | None = None  # default: EACHLABS_BASE_URL / REPLICATE_BASE_URL / ...
    model: str | None = None
    version: str | None = None
    price_usd: float | None = Field(default=None, ge=0)
    account: str | None = None  # name for the shared limits; default: a hash of the key
    max_in_flight: int | None = Field(default=None, ge=1)  # default: what the host publishes
    creates_per_minute: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("base_url")
    @classmethod
    def _http_only(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://", v):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/") if v else v

    @field_validator("api_key_env", "base_url_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME_RE.match(v):
            raise ValueError(f"{v!r} is not an environment variable name (A-Z, 0-9, _)")
        return v

    @field_validator("account")
    @classmethod
    def _account_slug(cls, v: str | None) -> str | None:
        if v is not None and not SLUG_RE.match(v):
            raise ValueError(f"account {v!r} is not a slug ([a-z0-9][a-z0-9_-]*)")
        return v


class HostedProviderConfig(EachlabsProviderConfig):
    """flux-depth-pro on one of several hosts, in order of preference (`hosts`). Switching host is
    one line (`hosts: [replicate]`); a host that does not serve the model, or stays unavailable
    for `unavailable_after_s`, is skipped for the rest of the run. The shared settings (mode,
    params, concurrency, polling, deadlines, retries) are `eachlabs`'; per-host ones go in `hosts`."""

    name: Literal["hosted"] = "hosted"  # type: ignore[assignment]  # the union's discriminator
    hosts: list[HostEntry] = Field(
        default_factory=lambda: [HostEntry(name="eachlabs")], min_length=1
    )
    unavailable_after_s: float = Field(default=300.0, gt=0)
    # true: a result from any listed host passes for the others' (one cache key for all hosts)
    interchangeable_results: bool = False

    @model_validator(mode="after")
    def _per_host_settings(self) -> HostedProviderConfig:
        names = [h.name for h in self.hosts]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"host(s) listed more than once: {', '.join(twice)}")
        misplaced = sorted({"base_url", "model", "version", "price_usd"} & self.model_fields_set)
        if misplaced:
            raise ValueError(
                f"{', '.join(misplaced)} differ by host: set them per host, e.g. "
                f"hosts: [{{name: {names[0]}, {misplaced[0]}: ...}}]"
            )
        return self


class OnnxProviderConfig(StrictModel):
    """A local learned model (Depth Anything V2 / MiDaS-style ONNX export)."""

    name: Literal["onnx"] = "onnx"
    model_path: str
    family: Literal["depth_anything_v2", "midas"] = "depth_anything_v2"
    input_size: int = Field(default=518, ge=14, le=4096)
    batch_size: int = Field(default=1, ge=1, le=64)
    execution_providers: list[str] | None = None
    price_usd: float = Field(default=0.0, ge=0)


ProviderConfig = Annotated[
    LocalProviderConfig | EachlabsProviderConfig | HostedProviderConfig | OnnxProviderConfig,
    Field(discriminator="name"),
]


# --------------------------------------------------------------------------- derived assets ("models")


class DepthMapSettings(StrictModel):
    write_npy: bool = False
    # catalog: derived assets read every map on the catalog's common range (image sequences)
    normalization: Literal["per_image", "catalog"] = "per_image"


class NormalMapSettings(StrictModel):
    strength: float = Field(default=1.0, gt=0)
    convention: Literal["opengl", "directx"] = "opengl"
    bit_depth: Literal[8, 16] = 8
    # edge-aware smoothing before differentiation, × the long side (0 = off; see depth.normals)
    smooth: float = Field(default=0.2, ge=0, le=0.5)


class SpriteSettings(StrictModel):
    layers: int = Field(default=5, ge=2, le=16)
    preview_format: Literal["webp", "gif"] = "webp"
    # One sway loop lasts PREVIEW_LOOP_MS whatever the frame count. The preview is a glance (the
    # gallery shows it 160 px wide; the layers are the full-size product) and its WebP encoding
    # costs in proportion to frames × pixels: 24 frames of at most 256 px take half the CPU of 384
    # px, which was a quarter of a whole image's pipeline CPU. Raise both for a larger, smoother one.
    preview_frames: int = Field(default=24, ge=24, le=48)
    preview_max_side: int = Field(default=256, ge=64, le=4096)
    feather_px: float = Field(default=2.0, ge=0)


class ModelSettings(StrictModel):
    """Per-asset settings; project defaults, overridable per catalog."""

    depth_maps: DepthMapSettings = Field(default_factory=DepthMapSettings)
    normal_maps: NormalMapSettings = Field(default_factory=NormalMapSettings)
    parallax_sprites: SpriteSettings = Field(default_factory=SpriteSettings)


# --------------------------------------------------------------------------- catalogs


class UploadSensorConfig(StrictModel):
    """`<catalog>__upload_sensor`: request a run of the catalog's partition on new/changed uploads."""

    enabled: bool = True  # false: the sensor exists but starts stopped (toggle it in the UI)
    settle_seconds: float = Field(default=30.0, ge=0, le=86_400)  # younger objects wait a tick
    # While objects are settling the run waits, at most this long, so busy folders still refresh.
    max_settle_wait_seconds: float = Field(default=900.0, ge=0, le=7 * 86_400)
    minimum_interval_seconds: int = Field(default=30, ge=5, le=86_400)
    # First tick (no cursor yet) over a source holding more objects than this: record a baseline
    # and launch nothing (backfill the catalog for what already exists).
    first_tick_max_files: int = Field(default=10_000, ge=1)
    on_delete: Literal["run", "ignore"] = "run"  # deletions alone: refresh the catalog or not


# --------------------------------------------------------------------------- declarative tests


class _TestArgs(StrictModel):
    severity: Literal["error", "warn"] = "error"


class ValidDepthRatioTest(_TestArgs):
    """depth_stats.valid_fraction (share of valid depth pixels) is at least `min`."""

    min: float = Field(ge=0, le=1)
    aggregate: Literal["each", "mean"] = "each"  # every image, or the catalog mean


class MaxRejectedRatioTest(_TestArgs):
    """source_images: rejected files / all files is at most `max`."""

    max: float = Field(ge=0, le=1)


class DepthRangeTest(_TestArgs):
    """depth_stats: p99 - p1 of the normalised depth is at least `p99_minus_p1_min` (not flat)."""

    p99_minus_p1_min: float = Field(ge=0, le=1)
    aggregate: Literal["each", "mean"] = "each"


class MinImagesTest(_TestArgs):
    """source_images: at least `min` accepted images."""

    min: int = Field(ge=0)


class DeclaredTest(StrictModel):
    """One entry of a catalog's `tests:` list: `{<test name>: {<args>}}`, one test per entry."""

    valid_depth_ratio: ValidDepthRatioTest | None = None
    max_rejected_ratio: MaxRejectedRatioTest | None = None
    depth_range: DepthRangeTest | None = None
    min_images: MinImagesTest | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_known_test(cls, data: Any) -> Any:
        if not isinstance(data, dict) or len(data) != 1:
            raise ValueError(
                "a test is a mapping with exactly one test name, "
                "e.g. {valid_depth_ratio: {min: 0.95}}"
            )
        name, args = next(iter(data.items()))
        if name not in cls.model_fields:
            raise ValueError(f"unknown test {name!r}; known tests: {', '.join(cls.model_fields)}")
        return {name: {} if args is None else args}

    @property
    def name(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def args(self) -> _TestArgs:
        return getattr(self, self.name)


class CatalogConfig(StrictModel):
    name: str
    description: str = ""  # listed in every asset's description, and the sensor's and schedule's
    source: SourceConfig
    provider: ProviderConfig = Field(default_factory=LocalProviderConfig)
    max_failure_ratio: float = Field(default=0.2, ge=0, le=1)
    max_image_bytes: int = Field(default=50 * 1024 * 1024, gt=0, le=50 * 1024 * 1024)
    max_image_pixels: int = Field(default=64_000_000, gt=0)
    budget_usd_per_run: float | None = Field(default=None, ge=0)
    on_budget: Literal["stop", "partial"] = "stop"
    upload_sensor: UploadSensorConfig | None = None
    schedule: str | None = None  # cron, e.g. "0 3 * * *" → `<catalog>__schedule`
    schedule_timezone: str = "UTC"
    tests: list[DeclaredTest] = Field(default_factory=list)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    owners: list[str] = Field(default_factory=list)  # added to every asset's owners
    tags: dict[str, str] = Field(default_factory=dict)  # on the catalog's runs, sensor and schedule

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError(f"catalog name {v!r} is not a slug ([a-z0-9][a-z0-9_-]*)")
        return v

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: list[str]) -> list[str]:
        return check_owners(v)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not is_valid_cron(v.strip()):
            raise ValueError(f'{v!r} is not a valid cron string (e.g. "0 3 * * *" or "@daily")')
        return v.strip()

    @field_validator("schedule_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (an IANA name such as UTC or Europe/Paris)"
            ) from None
        return v

    @field_validator("tests")
    @classmethod
    def _unique_tests(cls, v: list[DeclaredTest]) -> list[DeclaredTest]:
        names = [t.name for t in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"test(s) declared more than once: {', '.join(twice)}")
        return v


class CatalogFile(StrictModel):
    catalogs: list[CatalogConfig]


class ProjectFile(StrictModel):
    """`flux_depth_project.yml`: where catalogs live and project-wide defaults."""

    catalog_paths: list[str] = Field(default_factory=lambda: ["catalogs"])
    model_paths: list[str] = Field(default_factory=lambda: ["models"])
    owners: list[str] = Field(default_factory=list)  # every asset's owners (Dagster `owners`)

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: list[str]) -> list[str]:
        return check_owners(v)


class ModelsFile(StrictModel):
    models: dict[str, dict[str, Any]]

    @model_validator(mode="after")
    def _known_models(self) -> ModelsFile:
        unknown = set(self.models) - set(ModelSettings.model_fields)
        if unknown:
            raise ValueError(
                f"unknown model(s) {sorted(unknown)}; known: {sorted(ModelSettings.model_fields)}"
            )
        return self
