"""Load `dbt_like_configs/` into validated models: YAML → pydantic, with errors that say where.

A config error names the file, the line, the catalog and the field, because the person fixing it
is looking at the YAML, not at a Python traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from collections.abc import Iterable

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

    def __init__(self, file: Path, message: str, line: int | None = None,
                 catalog: str | None = None, field_path: str | None = None):
        self.file, self.line, self.catalog, self.field_path = file, line, catalog, field_path
        where = f"{file}:{line}" if line else str(file)
        parts = [where]
        if catalog:
            parts.append(f"catalog {catalog!r}")
        if field_path:
            parts.append(f"field {field_path!r}")
        super().__init__(f"{': '.join(parts)}: {message}")


@dataclass(frozen=True)
class Project:
    """Everything `dbt_like_configs/` declares, validated and with paths resolved."""

    config_dir: Path
    root: Path
    project: ProjectFile
    catalogs: dict[str, CatalogConfig]
    models: ModelSettings
    catalog_files: dict[str, Path] = field(default_factory=dict)

    def catalog(self, name: str) -> CatalogConfig:
        try:
            return self.catalogs[name]
        except KeyError:
            known = ", ".join(sorted(self.catalogs)) or "none"
            raise KeyError(f"unknown catalog {name!r} (declared: {known})") from None

    def settings_for(self, catalog: str) -> ModelSettings:
        """Project model settings with the catalog's `models:` overrides merged on top."""
        overrides = self.catalogs[catalog].models
        if not overrides:
            return self.models
        merged = self.models.model_dump()
        for key, values in overrides.items():
            merged.setdefault(key, {}).update(values)
        try:
            return ModelSettings.model_validate(merged)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(self.catalog_files[catalog], err["msg"], catalog=catalog,
                              field_path="models." + ".".join(map(str, err["loc"]))) from None


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
    config_dir = Path(config_dir).expanduser().resolve() if config_dir else default_config_dir()
    if not config_dir.is_dir():
        raise ConfigError(config_dir, "config directory does not exist")
    root = config_dir.parent
    project_path = config_dir / PROJECT_FILE
    project = (_validate(project_path, _read_yaml(project_path)[0], ProjectFile)
               if project_path.exists() else ProjectFile())

    models = ModelSettings()
    for path in _yaml_files(config_dir, project.model_paths):
        data, node = _read_yaml(path)
        parsed = _validate(path, data, ModelsFile, node)
        try:
            models = ModelSettings.model_validate({**models.model_dump(), **parsed.models})
        except ValidationError as exc:
            _raise_from_validation(path, exc, node, prefix=("models",))

    catalogs: dict[str, CatalogConfig] = {}
    files: dict[str, Path] = {}
    for path in _yaml_files(config_dir, project.catalog_paths):
        data, node = _read_yaml(path)
        if data is None:
            continue
        catalog_file = _validate(path, data, CatalogFile, node)
        for index, cat in enumerate(catalog_file.catalogs):
            if cat.name in catalogs:
                raise ConfigError(path, f"duplicate catalog name (first declared in {files[cat.name]})",
                                  line=_line_of(node, ("catalogs", index, "name")), catalog=cat.name,
                                  field_path="name")
            catalogs[cat.name] = _resolve_paths(cat, root)
            refused = _refused_source(catalogs[cat.name])  # a relative path judged once resolved
            if refused:
                raise ConfigError(path, refused, line=_line_of(node, ("catalogs", index, "source",
                                                                      "path")),
                                  catalog=cat.name, field_path="source.path")
            files[cat.name] = path
    return Project(config_dir=config_dir, root=root, project=project, catalogs=catalogs,
                   models=models, catalog_files=files)


# --------------------------------------------------------------------------- helpers


def _yaml_files(config_dir: Path, subdirs: Iterable[str]) -> list[Path]:
    out: list[Path] = []
    for sub in subdirs:
        d = (config_dir / sub)
        if d.is_dir():
            out.extend(sorted(p for p in d.rglob("*") if p.suffix in (".yml", ".yaml")))
    return out


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"cannot read file: {exc}") from None
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, f"malformed YAML: {problem}", line=line) from None


def _validate(path: Path, data: Any, model: type[_M],
              node: yaml.Node | None = None) -> _M:
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        _raise_from_validation(path, exc, node, data=data)


def _raise_from_validation(path: Path, exc: ValidationError, node: yaml.Node | None,
                           data: Any = None, prefix: tuple = ()) -> NoReturn:
    err = exc.errors()[0]
    loc = prefix + tuple(err["loc"])
    catalog = None
    if len(loc) >= 2 and loc[0] == "catalogs" and isinstance(loc[1], int) and isinstance(data, dict):
        try:
            catalog = data["catalogs"][loc[1]].get("name")
        except (AttributeError, IndexError, KeyError, TypeError):
            catalog = None
    field_path = _field_path(loc, data)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling)"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more error{'s' if more > 1 else ''})"
    raise ConfigError(path, msg, line=_line_of(node, loc), catalog=catalog,
                      field_path=field_path) from None


def _field_path(loc: tuple, data: Any) -> str:
    """Dotted path inside the YAML, dropping pydantic's union tags and the catalog index."""
    parts: list[str] = []
    cur = data
    for i, key in enumerate(loc):
        if i < 2 and loc[0] == "catalogs":
            cur = cur.get(key) if isinstance(cur, dict) else (
                cur[key] if isinstance(cur, list) and isinstance(key, int) and key < len(cur) else None)
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
            update={"model_path": _resolve(cat.provider.model_path, root)})
    return cat.model_copy(update=update) if update else cat
