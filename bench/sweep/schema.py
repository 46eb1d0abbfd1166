"""The study file: its schema (pydantic) and loading, with errors that name the file and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from bench.errors import BenchError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetEntry(_Model):
    name: str
    tasks: list[int] | None = None  # OGBench singletask task ids; None for datasets without tasks


class Mix(_Model):
    mode: Literal["ratio", "synthetic", "union"] = "ratio"
    ratio: float = Field(default=0.5, ge=0.0, le=1.0)


class AugmenterEntry(_Model):
    name: str
    label: str | None = None  # distinguishes several variants of one augmenter
    config: dict[str, Any] = Field(default_factory=dict)
    mix: Mix | None = None  # this variant's mixing (e.g. SER synthetic-only beside SER 50/50); None: the study's


class AlgoEntry(_Model):
    name: str
    label: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class Training(_Model):
    steps: int = Field(gt=0)
    eval_every: int | None = Field(default=None, gt=0)


class Evaluation(_Model):
    episodes: int = Field(default=10, gt=0)


class Slurm(_Model):
    partition: str | None = None
    qos: str | None = None
    account: str | None = None
    gpus_per_node: int = Field(default=0, ge=0)
    cpus_per_task: int = Field(default=2, gt=0)
    mem_gb: float = Field(default=8, gt=0)
    timeout_min: int = Field(default=240, gt=0)
    array_parallelism: int = Field(default=64, gt=0)
    max_array_size: int = Field(default=1000, gt=0)
    runs_per_job: int = Field(default=1, gt=0)
    additional: dict[str, Any] = Field(default_factory=dict)  # extra sbatch options


class Executor(_Model):
    kind: Literal["local", "debug", "slurm"] = "local"
    workers: int = Field(default=2, gt=0)
    slurm: Slurm = Field(default_factory=Slurm)


class Study(_Model):
    # The name names files (results/<name>.parquet, the SLURM log folder): a safe character set and length.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    datasets: list[DatasetEntry] = Field(min_length=1)
    augmenters: list[AugmenterEntry] = Field(min_length=1)
    algos: list[AlgoEntry] = Field(min_length=1)
    seeds: list[Annotated[int, Field(ge=0, lt=2**32)]] = Field(min_length=1)
    training: Training
    evaluation: Evaluation = Field(default_factory=Evaluation)
    mix: Mix = Field(default_factory=Mix)
    skip_inapplicable: bool = False  # skip pairs such as DT x a transitions augmenter instead of refusing
    device: str = "auto"
    executor: Executor = Field(default_factory=Executor)
    # A folder (relative to this file) that keeps the finished runs' small files, committed with the repository:
    # the sweep counts the runs there as done, so the study accumulates across machines (bench/sweep/archive.py).
    archive: str | None = None
    _source_file: Path | None = PrivateAttr(default=None)

    @property
    def source_file(self) -> Path | None:
        return self._source_file

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            raise ValueError(f"seed(s) {', '.join(map(str, dup))} listed twice (the same run would train twice)")
        return seeds


# ------------------------------------------------------------------------------------------ loading
def _line_of(root, loc) -> int | None:
    node = root
    line = getattr(node, "start_mark", None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == part), None)
            if nxt is None:
                key = next((k for k, _ in node.value if k.value == part), None)
                return (key.start_mark.line + 1) if key is not None else line.line + 1
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark
    return line.line + 1 if line is not None else None


def load_study(path: Path | str) -> tuple[Study, Any]:
    path = Path(path)
    if not path.exists():
        raise BenchError(f"{path}: no such study file")
    if not path.is_file():
        raise BenchError(f"{path}: not a study file (a directory or a device)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BenchError(f"{path}: not UTF-8 text (byte {e.start}); a study file is YAML") from None
    except OSError as e:
        raise BenchError(f"{path}: cannot read the study file ({e.strerror or e})") from None
    try:
        root = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise BenchError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise BenchError(f"{path}: a study file is a mapping (name, datasets, augmenters, algos, seeds, training)")
    try:
        study = Study.model_validate(raw)
        study._source_file = path
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        line = _line_of(root, loc)
        field = ".".join(str(p) for p in loc)
        allowed = ""
        if err["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            allowed = f" (allowed: {', '.join(model.model_fields)})" if model else ""
        raise BenchError(f"{path}:{line}: {field}: {err['msg']}{allowed}") from None
    return study, root


def _model_at(loc) -> type[BaseModel] | None:
    model: Any = Study
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return None
    return model


# ------------------------------------------------------------------------------------------ expansion
