"""Load `dbt_like_configs/` into validated models: YAML → pydantic, with errors that say where.

A config error names the file, the line, the catalog and the field, because the person fixing it
is looking at the YAML, not at a Python traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from flux_depth_assets.config.models import (
    CatalogConfig,
    CatalogFile,
    LocalDirSource,
    ModelSettings,
    ModelsFile,
    OnnxProviderConfig,
    ProjectFile,
    UrlManifestSource,
)

PROJECT_FILE = "flux_depth_project.yml"
CONFIG_DIR_ENV = "FLUX_DEPTH_CONFIG_DIR"

_M = TypeVar("_M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file is invalid; the message says file:line, catalog and field."""

    def __init__(
        self,
        file: Path,
        message: str,
        line: int | None = None,
        catalog: str | None = None,
        field_path: str | None = None,
    ):
        self.file, self.line, self.catalog, self.field_path = file, line, catalog, field_path
        where = f"{file}:{line}" if line else str(file)
        parts = [where]
        if catalog:
            parts.append(f"catalog {catalog!r}")
        if field_path:
            parts.append(f"field {field_path!r}")
        super().__init__(f"{': '.join(parts)}: {message}")


class ConfigErrors(ConfigError):
    """Every error found in one pass over the config (each one a `ConfigError` line)."""

    def __init__(self, errors: list[ConfigError]):
        first = errors[0]
        self.errors = errors
        self.file, self.line, self.catalog, self.field_path = (
            first.file,
            first.line,
            first.catalog,
            first.field_path,
        )
        lines = [str(e) for e in errors]
        ValueError.__init__(
            self,
            lines[0]
            if len(lines) == 1
            else f"{len(lines)} config errors:\n  " + "\n  ".join(lines),
        )


@dataclass(frozen=True)
class Project:
    """Everything `dbt_like_configs/` declares, validated and with paths resolved."""

    config_dir: Path
    root: Path
    project: ProjectFile
    catalogs: dict[str, CatalogConfig]
    models: ModelSettings
    catalog_files: dict[str, Path] = field(default_factory=dict)
    #: catalog → its merged model settings (project defaults + the catalog's `models:`)
    catalog_settings: dict[str, ModelSettings] = field(default_factory=dict)
    #: catalog → line of its `source:` key (for errors about the source itself)
    source_lines: dict[str, int | None] = field(default_factory=dict)

    def catalog(self, name: str) -> CatalogConfig:
        try:
            return self.catalogs[name]
        except KeyError:
            known = ", ".join(sorted(self.catalogs)) or "none"
            raise KeyError(f"unknown catalog {name!r} (declared: {known})") from None

    def settings_for(self, catalog: str) -> ModelSettings:
        """Project model settings with the catalog's `models:` overrides merged on top."""
        return self.catalog_settings.get(catalog, self.models)


def default_config_dir() -> Path:
    """`$FLUX_DEPTH_CONFIG_DIR`, else `dbt_like_configs/` in the working directory or the repo."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    cwd = Path.cwd() / "dbt_like_configs"
    if cwd.is_dir():
        return cwd.resolve()
    return (Path(__file__).resolve().parents[2] / "dbt_like_configs").resolve()


def load_project(config_dir: str | os.PathLike[str] | None = None) -> Project:
    """The validated project; raises `ConfigErrors` naming every error of every file at once."""
    project, errors = collect_project(config_dir)
    if errors or project is None:
        raise ConfigErrors(errors)
    return project


def collect_project(
    config_dir: str | os.PathLike[str] | None = None,
) -> tuple[Project | None, list[ConfigError]]:
    """Load what is valid and collect every error (no exception): what `validate` reports."""
    config_dir = Path(config_dir).expanduser().resolve() if config_dir else default_config_dir()
    if not config_dir.is_dir():
        return None, [ConfigError(config_dir, "config directory does not exist")]
    errors: list[ConfigError] = []
    root = config_dir.parent
    project_path = config_dir / PROJECT_FILE
    project = ProjectFile()
    if project_path.exists():
        data, node = _read_yaml(project_path, errors)
        project = _validate(project_path, data, ProjectFile, node, errors) or project

    models = ModelSettings()
    for path in _yaml_files(config_dir, project.model_paths):
        data, node = _read_yaml(path, errors)
        parsed = _validate(path, data, ModelsFile, node, errors)
        if parsed is None:
            continue
        try:
            models = ModelSettings.model_validate({**models.model_dump(), **parsed.models})
        except ValidationError as exc:
            errors.extend(_errors_from_validation(path, exc, node, data, prefix=("models",)))

    out = Project(config_dir, root, project, catalogs={}, models=models)  # filled in below
    for path in _yaml_files(config_dir, project.catalog_paths):
        data, node = _read_yaml(path, errors)
        if data is None:
            continue
        for index, cat in _catalog_entries(path, data, node, errors):
            where = ("catalogs", index)
            if cat.name in out.catalogs:
                errors.append(
                    ConfigError(
                        path,
                        f"duplicate catalog name (first declared in {out.catalog_files[cat.name]})",
                        line=_line_of(node, (*where, "name")),
                        catalog=cat.name,
                        field_path="name",
                    )
                )
                continue
            # a bad override is reported; the catalog stays so its source is checked too
            merged = _merge_overrides(path, models, cat, data, node, where, errors) or models
            out.catalogs[cat.name] = _resolve_paths(cat, root)
            # a relative path is judged once resolved
            refused = _refused_source(out.catalogs[cat.name])
            if refused:
                raise ConfigError(
                    path,
                    refused,
                    line=_line_of(node, ("catalogs", index, "source", "path")),
                    catalog=cat.name,
                    field_path="source.path",
                )
            out.catalog_files[cat.name] = path
            out.catalog_settings[cat.name] = merged
            out.source_lines[cat.name] = _line_of(node, (*where, "source"))
    return out, errors


# --------------------------------------------------------------------------- helpers


def _catalog_entries(
    path: Path, data: Any, node: yaml.Node | None, errors: list[ConfigError]
) -> list[tuple[int, CatalogConfig]]:
    """Each entry of `catalogs:` validated on its own, so one bad catalog hides no other."""
    if not isinstance(data, dict):
        errors.append(
            ConfigError(path, f"expected a mapping at the top level, got {type(data).__name__}")
        )
        return []
    unknown = sorted(set(data) - set(CatalogFile.model_fields))
    for key in unknown:
        errors.append(
            ConfigError(
                path,
                "unknown field (check the spelling)",
                line=_line_of(node, (key,)),
                field_path=str(key),
            )
        )
    entries = data.get("catalogs")
    if not isinstance(entries, list):
        errors.append(
            ConfigError(
                path,
                "`catalogs:` must be a list of catalogs",
                line=_line_of(node, ("catalogs",)),
                field_path="catalogs",
            )
        )
        return []
    out = []
    for index, entry in enumerate(entries):
        try:
            out.append((index, CatalogConfig.model_validate(entry)))
        except ValidationError as exc:
            errors.extend(
                _errors_from_validation(path, exc, node, data, prefix=("catalogs", index))
            )
    return out


def _merge_overrides(
    path: Path,
    models: ModelSettings,
    cat: CatalogConfig,
    data: Any,
    node: yaml.Node | None,
    where: tuple,
    errors: list[ConfigError],
) -> ModelSettings | None:
    """Project settings + the catalog's `models:`; errors worded and located like any field."""
    if not cat.models:
        return models
    merged = models.model_dump()
    for key, values in cat.models.items():
        base = merged.get(key)
        merged[key] = (
            {**base, **values} if isinstance(base, dict) and isinstance(values, dict) else values
        )
    try:
        return ModelSettings.model_validate(merged)
    except ValidationError as exc:
        errors.extend(_errors_from_validation(path, exc, node, data, prefix=(*where, "models")))
        return None


def _yaml_files(config_dir: Path, subdirs: Iterable[str]) -> list[Path]:
    out: list[Path] = []
    for sub in subdirs:
        d = config_dir / sub
        if d.is_dir():
            out.extend(sorted(p for p in d.rglob("*") if p.suffix in (".yml", ".yaml")))
    return out


def _read_yaml(path: Path, errors: list[ConfigError]) -> tuple[Any, yaml.Node | None]:
    """The file's data and node tree; an unreadable or malformed file adds an error, gives None."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(ConfigError(path, f"cannot read file: {exc}"))
        return None, None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        errors.append(ConfigError(path, f"malformed YAML: {problem}", line=line))
        return None, None
    errors.extend(_duplicate_keys(path, node, data))
    return data, node


def _duplicate_keys(
    path: Path, node: yaml.Node | None, data: Any, trail: tuple = ()
) -> list[ConfigError]:
    """A key given twice in one mapping (YAML keeps the last one silently): an error, with both lines."""
    out: list[ConfigError] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key is not None and key in first:
                out.append(
                    ConfigError(
                        path,
                        f"duplicate key {key!r} (first at line {first[key]}; YAML would keep "
                        "only the last one)",
                        line=k.start_mark.line + 1,
                        catalog=_catalog_name(data, trail),
                        field_path=_dotted((*trail, key)),
                    )
                )
            elif key is not None:
                first[key] = k.start_mark.line + 1
            out.extend(_duplicate_keys(path, v, data, (*trail, key)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.extend(_duplicate_keys(path, item, data, (*trail, i)))
    return out


def _catalog_name(data: Any, loc: tuple) -> str | None:
    if (
        len(loc) >= 2
        and loc[0] == "catalogs"
        and isinstance(loc[1], int)
        and isinstance(data, dict)
    ):
        try:
            name = data["catalogs"][loc[1]].get("name")
            return name if isinstance(name, str) else None
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
    return None


def _dotted(loc: tuple) -> str:
    parts = loc[2:] if len(loc) >= 2 and loc[0] == "catalogs" and isinstance(loc[1], int) else loc
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in parts).replace(".[", "[")


def _validate(
    path: Path, data: Any, model: type[_M], node: yaml.Node | None, errors: list[ConfigError]
) -> _M | None:
    if data is None and node is None:
        return None  # unreadable: already reported
    if not isinstance(data, dict):
        errors.append(
            ConfigError(path, f"expected a mapping at the top level, got {type(data).__name__}")
        )
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors.extend(_errors_from_validation(path, exc, node, data))
        return None


def _errors_from_validation(
    path: Path, exc: ValidationError, node: yaml.Node | None, data: Any = None, prefix: tuple = ()
) -> list[ConfigError]:
    """One `ConfigError` per pydantic error, each with its own line, catalog and field."""
    out = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        msg = (
            "unknown field (check the spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        )
        out.append(
            ConfigError(
                path,
                msg,
                line=_line_of(node, loc),
                catalog=_catalog_name(data, loc),
                field_path=_field_path(loc, data),
            )
        )
    return out


def _field_path(loc: tuple, data: Any) -> str:
    """Dotted path inside the YAML, dropping pydantic's union tags and the catalog index."""
    parts: list[str] = []
    cur = data
    for i, key in enumerate(loc):
        if i < 2 and loc[0] == "catalogs":
            cur = (
                cur.get(key)
                if isinstance(cur, dict)
                else (
                    cur[key]
                    if isinstance(cur, list) and isinstance(key, int) and key < len(cur)
                    else None
                )
            )
            continue
        if isinstance(cur, dict) and key in cur:
            parts.append(str(key))
            cur = cur[key]
        elif isinstance(cur, list) and isinstance(key, int) and key < len(cur):
            parts.append(f"[{key}]")
            cur = cur[key]
        elif isinstance(cur, dict) and key in (cur.get("name"), cur.get("type")):
            continue  # pydantic's discriminated-union tag, not a YAML key
        else:
            parts.append(f"[{key}]" if isinstance(key, int) else str(key))  # missing/unknown field
            cur = None
    return ".".join(parts).replace(".[", "[") or ".".join(map(str, loc))


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the deepest YAML node that the pydantic location reaches."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    node, line = v, k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
    return line


def _resolve(path: str, root: Path) -> str:
    if "://" in path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (root / p).resolve())


def _refused_source(cat: CatalogConfig) -> str | None:
    from flux_depth_assets.sources.roots import system_root_reason

    if not isinstance(cat.source, LocalDirSource):
        return None
    reason = system_root_reason(cat.source.path)
    return f"refusing local_dir path: {reason}" if reason else None


def _resolve_paths(cat: CatalogConfig, root: Path) -> CatalogConfig:
    update: dict[str, Any] = {}
    if isinstance(cat.source, (LocalDirSource, UrlManifestSource)):
        update["source"] = cat.source.model_copy(update={"path": _resolve(cat.source.path, root)})
    if isinstance(cat.provider, OnnxProviderConfig):
        update["provider"] = cat.provider.model_copy(
            update={"model_path": _resolve(cat.provider.model_path, root)}
        )
    return cat.model_copy(update=update) if update else cat
