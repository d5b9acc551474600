"""Pydantic models for `dbt_like_configs/`: the validated shape of every YAML file.

Every model forbids unknown keys so a typo fails loading instead of being silently ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
DEFAULT_INCLUDE = ["*.jpg", "*.jpeg", "*.png", "*.webp"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sources


class LocalDirSource(StrictModel):
    type: Literal["local_dir"] = "local_dir"
    path: str
    include: list[str] = Field(default_factory=lambda: list(DEFAULT_INCLUDE))
    recursive: bool = True


class S3PrefixSource(StrictModel):
    type: Literal["s3_prefix"] = "s3_prefix"
    bucket: str
    prefix: str = ""
    include: list[str] = Field(default_factory=lambda: list(DEFAULT_INCLUDE))


class UrlManifestSource(StrictModel):
    type: Literal["url_manifest"] = "url_manifest"
    path: str  # CSV or Parquet with a `url` column (+ optional `external_id`)
    url_column: str = "url"
    id_column: str | None = "external_id"
    timeout_s: float = Field(default=30.0, gt=0)
    max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)


SourceConfig = Annotated[
    Union[LocalDirSource, S3PrefixSource, UrlManifestSource], Field(discriminator="type")
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
    Union[LocalProviderConfig, EachlabsProviderConfig, OnnxProviderConfig],
    Field(discriminator="name"),
]


# --------------------------------------------------------------------------- derived assets ("models")


class DepthMapSettings(StrictModel):
    write_npy: bool = False


class NormalMapSettings(StrictModel):
    strength: float = Field(default=1.0, gt=0)
    convention: Literal["opengl", "directx"] = "opengl"
    bit_depth: Literal[8, 16] = 8


class SpriteSettings(StrictModel):
    layers: int = Field(default=5, ge=2, le=16)
    preview_format: Literal["webp", "gif"] = "webp"
    preview_frames: int = Field(default=32, ge=24, le=48)
    preview_max_side: int = Field(default=512, ge=64, le=4096)
    feather_px: float = Field(default=2.0, ge=0)


class ModelSettings(StrictModel):
    """Per-asset settings; project defaults, overridable per catalog."""

    depth_maps: DepthMapSettings = Field(default_factory=DepthMapSettings)
    normal_maps: NormalMapSettings = Field(default_factory=NormalMapSettings)
    parallax_sprites: SpriteSettings = Field(default_factory=SpriteSettings)


# --------------------------------------------------------------------------- catalogs


class UploadSensorConfig(StrictModel):
    enabled: bool = True
    settle_seconds: float = Field(default=30.0, ge=0)
    minimum_interval_seconds: int = Field(default=30, ge=5)
    first_tick_max_files: int = Field(default=10_000, ge=1)


class CatalogConfig(StrictModel):
    name: str
    description: str = ""
    source: SourceConfig
    provider: ProviderConfig = Field(default_factory=LocalProviderConfig)
    max_failure_ratio: float = Field(default=0.2, ge=0, le=1)
    max_image_bytes: int = Field(default=50 * 1024 * 1024, gt=0, le=50 * 1024 * 1024)
    max_image_pixels: int = Field(default=64_000_000, gt=0)
    budget_usd_per_run: float | None = Field(default=None, ge=0)
    on_budget: Literal["stop", "partial"] = "stop"
    upload_sensor: UploadSensorConfig | None = None
    schedule: str | None = None
    tests: list[dict[str, Any]] = Field(default_factory=list)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    owners: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError(f"catalog name {v!r} is not a slug ([a-z0-9][a-z0-9_-]*)")
        return v


class CatalogFile(StrictModel):
    catalogs: list[CatalogConfig]


class ProjectFile(StrictModel):
    """`flux_depth_project.yml`: where catalogs live and project-wide defaults."""

    name: str = "flux_depth_assets"
    version: str = "1"
    catalog_paths: list[str] = Field(default_factory=lambda: ["catalogs"])
    model_paths: list[str] = Field(default_factory=lambda: ["models"])
    owners: list[str] = Field(default_factory=list)


class ModelsFile(StrictModel):
    models: dict[str, dict[str, Any]]

    @model_validator(mode="after")
    def _known_models(self) -> "ModelsFile":
        unknown = set(self.models) - set(ModelSettings.model_fields)
        if unknown:
            raise ValueError(
                f"unknown model(s) {sorted(unknown)}; known: {sorted(ModelSettings.model_fields)}"
            )
        return self
