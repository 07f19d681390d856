"""The suite file: what ``simbench run suite.yaml`` trains, extracts, aligns and scores.

A suite is YAML validated with pydantic (every mapping forbids unknown keys); see
``examples/quickstart.yaml`` for a commented example and the README for the format.
:func:`load_suite` returns a :class:`Suite` or raises :class:`SuiteError`, whose message
has one line per problem, ``FILE:LINE: key.path: what is wrong``, every problem of the
file reported at once. Line numbers come from the YAML nodes (``yaml.compose`` with the
safe loader); nothing in a suite file can run code.

Checked at load time: types and required keys; unknown keys (with the closest allowed
one); plugin names (architecture, dataset, alignment, metric, executor: the registry's
message with the closest names) and their parameters (by instantiating the plugin);
training overrides (``TrainConfig``); checkpoint files (weights and sidecar must exist);
model references in pairs; pair generators that yield nothing.

Model references: a model entry ``id`` with ``seeds: [0, 1]`` expands to the models
``id@0`` and ``id@1`` (a single ``seed: s``, default 0, gives ``id@s``); an entry with a
``checkpoint`` is the model ``id``. ``<model>:e<N>`` is that model's checkpoint after
``N`` epochs (``N`` in its ``train.save_epochs``). In ``pairs``, a bare ``id`` may stand
for ``id@s`` when the entry has a single seed (``{checkpoints: id}``: every seed).

Relative paths (``output``, ``cache``, ``checkpoint``) are resolved against the suite
file's folder; ``~`` and ``$VARS`` are expanded. Dataset parameters (``root``, ``path``)
are passed to the plugin unchanged (it resolves them against the working directory and
expands ``$SIMBENCH_SHARED_DATA``-style variables), so a model's cache key does not
depend on where the suite file lives.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Strict,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from simbench.errors import SimbenchError, UnknownPluginError
from simbench.registry import Registry, default_registry, suggest
from simbench.suite_yaml import MAX_SUITE_BYTES, BoundError, compose_bounded, read_suite_text
from simbench.train.config import KEYLESS_TRAIN_FIELDS, ModelSpec, PluginRef, TrainConfig

__all__ = [
    "RELATIONS",
    "SAME_FIELDS",
    "ModelEntry",
    "Probe",
    "Problem",
    "RelationLabels",
    "RunLimits",
    "Suite",
    "SuiteError",
    "load_suite",
    "parse_suite",
    "split_ref",
]

#: values of :meth:`Suite.relation` (the results' ``relation`` column)
RELATIONS: tuple[str, ...] = ("seed", "checkpoint", "dataset", "labels", "random_labels", "other")

#: fields a ``{same: [...]}`` pair generator can group models by (see :meth:`Suite.expand_pairs`)
SAME_FIELDS: tuple[str, ...] = ("id", "architecture", "dataset", "data", "labels", "train", "seed")

_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_REF_RE = re.compile(r"^(?P<id>[A-Za-z0-9_.-]+)(?:@(?P<seed>[0-9]+))?(?::e(?P<epoch>[0-9]+))?$")


# ----------------------------------------------------------------------------- errors


@dataclass(frozen=True, order=True)
class Problem:
    """One problem of a suite file: where (file, line, key path) and what."""

    line: int
    path: str
    message: str
    file: str = field(compare=False)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: "
        return f"{where}{self.path}: {self.message}" if self.path else where + self.message


class SuiteError(SimbenchError, ValueError):
    """An invalid suite file. ``problems`` lists every problem found, sorted by line; the
    message has one ``FILE:LINE: key.path: what is wrong`` line per problem."""

    def __init__(self, problems: Sequence[Problem]):
        unique = sorted(set(problems))
        self.problems: list[Problem] = unique
        super().__init__("\n".join(str(p) for p in unique))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across executor processes
        return (type(self), (self.problems,))


# ----------------------------------------------------------------------------- schema

NonNegInt = Annotated[int, Strict(), Field(ge=0)]
PosInt = Annotated[int, Strict(), Field(ge=1)]
Bool = Annotated[bool, Strict()]


def _ref_from_name(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


#: a plugin reference: a bare name (``cka``) or ``{name: cka, params: {...}}``
Ref = Annotated[PluginRef, BeforeValidator(_ref_from_name)]
_REF_ADAPTER: TypeAdapter[PluginRef] = TypeAdapter(Ref)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RelationLabels(BaseModel):
    """Free-form labels of a model (``relation:`` in its entry), kept for the leaderboard.

    Three keys override what :meth:`Suite.relation` derives from the model's dataset:
    ``task`` (``true_labels`` or ``random_labels``; default: ``random_labels`` when the
    dataset is or wraps a ``random_labels`` variant with ``fraction > 0``), ``labels_seed``
    (which random-label realisation; default: that variant's ``(seed, fraction)``; a
    random-label model with neither counts as a realisation of its own) and ``data`` (any
    identifier of the underlying data; default: the dataset reference with its
    ``random_labels`` layers removed; equal ``data`` means the same data). E.g. a model
    trained on a pre-shuffled archive: ``{task: random_labels, labels_seed: 1, data: cifar}``.
    Any other key is kept as it is (:meth:`Suite.relation_labels`).
    """

    model_config = ConfigDict(extra="allow")
    task: Literal["true_labels", "random_labels"] | None = None
    labels_seed: Any = None
    data: Any = None


class Normalization(_Strict):
    """Preprocessing foreign weights expect: per-channel ``mean``/``std`` of ``x/255`` and
    optionally the center-crop fraction ``crop_pct`` (resize to ``input_size/crop_pct``)."""

    mean: Annotated[list[float], Field(min_length=1)]
    std: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)]
    crop_pct: Annotated[float, Field(gt=0, le=1)] | None = None


class ModelEntry(_Strict):
    """One ``models:`` entry: a model to train (architecture, dataset, seeds, training
    overrides), an existing ``checkpoint`` (a ``.safetensors`` file with its sidecar, or a
    training run folder holding ``model.safetensors``), or foreign ``weights`` for an
    ``architecture`` (a state dict: ``.safetensors``, ``.pt``/``.pth``, or a folder holding
    ``model.safetensors``; no sidecar) with optional ``normalization`` and ``input_size``
    (defaults: the architecture's, e.g. timm's ``pretrained_cfg``)."""

    id: str
    architecture: Ref | None = None
    dataset: Ref | None = None
    seed: NonNegInt | None = None
    seeds: Annotated[list[NonNegInt], Field(min_length=1)] | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = None
    weights: str | None = None
    normalization: Normalization | None = None
    input_size: PosInt | None = None
    relation: RelationLabels = Field(default_factory=RelationLabels)

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError(
                f"model ids may contain only letters, digits, '_', '-' and '.' ('@' and ':' "
                f"separate the seed and the epoch); got {v!r}"
            )
        return v

    def seed_list(self) -> list[int]:
        """The seeds this entry expands to (``[]`` for a checkpoint or foreign weights)."""
        if self.checkpoint is not None or self.weights is not None:
            return []
        if self.seeds is not None:
            return list(self.seeds)
        return [self.seed if self.seed is not None else 0]


class Probe(_Strict):
    """The probe set: which images every model sees at extraction.

    ``images``: how many images (``null``: the whole split), drawn without replacement with
    ``seed`` (default: the suite's ``seed``); ``positions``: spatial positions sampled per
    image in conv layers (``null``: all); ``batch_size``: images per forward pass;
    ``blocks``: contiguous blocks of images for the jackknife standard error of every
    score; ``null_pairings``: seeded derangements of the images for its chance level
    (0: none) (MATH.md: Uncertainty and chance of one score); ``dtype``: the forward
    pass's precision (``float32``, or ``float64`` for the values of a float64 forward;
    statistics are accumulated in float64 either way, :mod:`simbench.runner.represent`)."""

    dataset: Ref = Field(default_factory=lambda: PluginRef(name="embedded"))
    split: Literal["train", "test"] = "test"
    images: PosInt | None = 500
    seed: NonNegInt | None = None
    positions: PosInt | None = 16
    batch_size: PosInt = 250
    blocks: Annotated[int, Strict(), Field(ge=2)] = 20
    null_pairings: NonNegInt = 4
    dtype: Literal["float32", "float64"] = "float32"

    @field_validator("null_pairings")
    @classmethod
    def _two_or_none(cls, v: int) -> int:
        if v == 1:
            raise ValueError("null_pairings must be 0 (no chance level) or >= 2 (for its sd)")
        return v


#: default ``run.cell_timeout_s``: a score cell running longer is hung, not slow (the
#: largest built-in cells take seconds; a 2000-image SRM fit about ten)
DEFAULT_CELL_TIMEOUT_S = 1800.0
#: a positive, finite number of seconds
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class RunLimits(_Strict):
    """``run:`` time limits in seconds (``null``: none). ``cell_timeout_s``: one score cell
    (default :data:`DEFAULT_CELL_TIMEOUT_S`); ``job_timeout_s``: one job of any stage
    (training, one pair's extraction, one layer's alignments or scores; default none).
    A cell or job over its limit is stopped (its worker process killed) and recorded as
    failed with the limit; the others go on. Limits never change results or cache keys.
    ``threads``: torch and BLAS threads of each job (default: the cores divided among
    the local executor's worker processes, so parallel jobs do not oversubscribe them;
    the CLI's ``--threads`` overrides it)."""

    cell_timeout_s: Seconds | None = DEFAULT_CELL_TIMEOUT_S
    job_timeout_s: Seconds | None = None
    threads: PosInt | None = None


class SamePairs(_Strict):
    """Every pair of models equal on the listed fields (see :data:`SAME_FIELDS`)."""

    same: Annotated[list[Literal[SAME_FIELDS]], Field(min_length=1)]  # type: ignore[valid-type]


class AllPairs(_Strict):
    """All models against all (unordered, in declaration order)."""

    all: Literal[True]


class CheckpointPairs(_Strict):
    """Each saved epoch of a model against its final state (Raghu et al. 2017, Fig. 4)."""

    checkpoints: str


ExplicitPair = Annotated[list[str], Field(min_length=2, max_length=2)]

_PAIR_TAGS: dict[str, type[BaseModel] | None] = {
    "<explicit>": None,
    "<same>": SamePairs,
    "<all>": AllPairs,
    "<checkpoints>": CheckpointPairs,
}


def _pair_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):  # serialising a validated item
        return {SamePairs: "<same>", AllPairs: "<all>", CheckpointPairs: "<checkpoints>"}.get(
            type(value)
        )
    if isinstance(value, list | tuple):
        return "<explicit>"
    if isinstance(value, dict):
        for key in ("same", "all", "checkpoints"):
            if key in value:
                return f"<{key}>"
        for key in value:  # a misspelt generator: validate as the closest one
            close = suggest(str(key), ["same", "all", "checkpoints"], n=1)
            if close:
                return f"<{close[0]}>"
    return None


PairItem = Annotated[
    Union[  # noqa: UP007 (tagged union)
        Annotated[ExplicitPair, Tag("<explicit>")],
        Annotated[SamePairs, Tag("<same>")],
        Annotated[AllPairs, Tag("<all>")],
        Annotated[CheckpointPairs, Tag("<checkpoints>")],
    ],
    Discriminator(
        _pair_tag,
        custom_error_type="pair_kind",
        custom_error_message=(
            "a pair is [model_a, model_b], {same: [fields]}, {all: true} or {checkpoints: model}"
        ),
    ),
]


_TAGS = frozenset({*_PAIR_TAGS, "<glob>", "<list>"})


def _layers_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "<glob>"
    if isinstance(value, list):
        return "<list>"
    return None


NonEmptyStr = Annotated[str, Field(min_length=1)]
Layers = Annotated[
    Union[  # noqa: UP007 (tagged union)
        Annotated[NonEmptyStr, Tag("<glob>")],
        Annotated[list[NonEmptyStr], Field(min_length=1), Tag("<list>")],
    ],
    Discriminator(
        _layers_tag,
        custom_error_type="layers_kind",
        custom_error_message=(
            "layers is 'all', a glob such as 'conv*', or a list of layer names and globs"
        ),
    ),
]


@dataclass
class _Model:
    """One expanded model: ``id@seed`` of a trained entry, or a checkpoint entry."""

    id: str
    index: int  # position of its entry in ``models``
    entry: ModelEntry
    seed: int | None
    spec: ModelSpec | None  # trained: the spec; checkpoint: the sidecar's spec (if readable)
    path: Path | None  # checkpoint models: the weights file
    epochs: tuple[int, ...]  # saved epochs


class Suite(_Strict):
    """A validated suite (see the module docstring and ``examples/quickstart.yaml``).

    Build it with :func:`load_suite` or :func:`parse_suite`: they also resolve paths,
    expand the models and the pairs, which the methods below read.
    """

    name: str
    output: str | None = None
    cache: str | None = None
    seed: NonNegInt = 0
    training: dict[str, Any] = Field(default_factory=dict)
    models: Annotated[list[ModelEntry], Field(min_length=1)]
    probe: Probe = Field(default_factory=Probe)
    pairs: Annotated[list[PairItem], Field(min_length=1)] = Field(
        default_factory=lambda: [AllPairs(all=True)]
    )
    layers: Layers = "all"
    layer_matrix: Bool = False
    #: which pairs get the layer matrix: model-reference globs (``t10@*``); both models of
    #: a pair must match one (default: every pair)
    layer_matrix_models: Annotated[list[str], Field(min_length=1)] | None = None
    #: standard error and chance level of the layer-matrix cells (default true); false
    #: scores each cross-layer cell once (layer identification ranks values, it does not
    #: read their stderr; the same-layer rows keep theirs), which is what makes large
    #: flattened or many-pair matrices affordable
    layer_matrix_uncertainty: Bool = True
    #: features of the layer-matrix rows: global-average-pooled ``(B, C)`` or flattened
    #: ``(B, C·H·W)`` (MATH.md conventions; memory grows with C·H·W × images)
    layer_features: Literal["pooled", "flat"] = "pooled"
    alignments: list[Ref] = Field(default_factory=lambda: [PluginRef(name="identity")])
    metrics: Annotated[list[Ref], Field(min_length=1)]
    draws: PosInt = 1
    executor: Ref = Field(default_factory=lambda: PluginRef(name="local"))
    run: RunLimits = Field(default_factory=RunLimits)
    #: ground-truth tests the leaderboard scores (plugins of kind ``test``); default: every
    #: test whose inputs the run has (MATH.md "Boards and ranking")
    tests: Annotated[list[str], Field(min_length=1)] | None = None

    _file: str = PrivateAttr("<suite>")
    _models: dict[str, _Model] = PrivateAttr(default_factory=dict)
    _pairs: list[tuple[str, str]] = PrivateAttr(default_factory=list)

    @field_validator("tests")
    @classmethod
    def _known_tests(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        reg = default_registry()
        for name in v:
            try:
                reg.get("test", name)
            except UnknownPluginError as exc:  # did-you-mean and the known tests
                raise ValueError(str(exc)) from None
        if len(set(v)) != len(v):
            raise ValueError("a test is named twice")
        return v

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                f"a suite name may contain only letters, digits, '_' and '-'; got {v!r}"
            )
        return v

    # -- paths ----------------------------------------------------------------------
    @property
    def file(self) -> str:
        """The suite file this suite was read from (``<string>`` for :func:`parse_suite`)."""
        return self._file

    @property
    def output_dir(self) -> Path:
        """Results and report folder (absolute)."""
        assert self.output is not None
        return Path(self.output)

    @property
    def cache_dir(self) -> Path:
        """Cache folder (absolute): ``cache``, default ``<output>/cache``."""
        return Path(self.cache) if self.cache is not None else self.output_dir / "cache"

    # -- models ---------------------------------------------------------------------
    def model_ids(self) -> list[str]:
        """Expanded model ids (``id@seed``, checkpoint entries ``id``) in declaration order."""
        return list(self._models)

    def model_specs(self) -> dict[str, ModelSpec | Path]:
        """Expanded model id -> its ``ModelSpec`` (models to train, training overrides
        applied) or the weights file of a checkpoint entry."""
        out: dict[str, ModelSpec | Path] = {}
        for mid, m in self._models.items():
            if m.path is not None:
                out[mid] = m.path
            else:
                assert m.spec is not None
                out[mid] = m.spec
        return out

    def spec_of(self, ref: str) -> ModelSpec | None:
        """The ``ModelSpec`` of a model reference (``id@seed``, ``id@seed:eN``, ``id``);
        for a checkpoint entry the spec recorded in its sidecar (``None`` if unreadable)."""
        return self._model(ref).spec

    def checkpoint_path(self, ref: str) -> Path | None:
        """Weights file of a checkpoint entry's reference (``ext`` or ``ext:eN``, the latter
        the ``epoch_N.safetensors`` next to it); ``None`` for models the suite trains."""
        m = self._model(ref)
        if m.path is None:
            return None
        _, epoch = split_ref(ref)
        if epoch is None:
            return m.path
        from simbench.train.checkpoint import epoch_file

        return m.path.parent / epoch_file(epoch)

    def relation_labels(self, ref: str) -> dict[str, Any]:
        """The ``relation:`` labels of a model's entry (free-form; ``{}`` if none)."""
        return self._model(ref).entry.relation.model_dump(exclude_none=True)

    def _model(self, ref: str) -> _Model:
        mid, _ = split_ref(ref)
        try:
            return self._models[mid]
        except KeyError:
            close = suggest(mid, list(self._models))
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"no model {mid!r} in suite {self.name!r}{hint}") from None

    # -- pairs, layers, plugins -----------------------------------------------------
    def expand_pairs(self) -> list[tuple[str, str]]:
        """Every pair of model references to compare, in the order of ``pairs``.

        Explicit ``[a, b]`` as written; ``{all: true}`` every ``(m_i, m_j)``, ``i < j`` in
        declaration order (final states); ``{same: [fields]}`` those of them equal on every
        listed field (``id``: same entry; ``architecture``/``dataset``/``train``/``seed``:
        equal spec fields, ``train`` ignoring ``save_epochs``; ``data``: same underlying
        data with random labels unwrapped; ``labels``: same labels kind and realisation);
        ``{checkpoints: m}`` ``(m:eN, m)`` for each saved epoch ``N`` ascending, for every
        seed when ``m`` is a bare id. A pair repeated (in either order) keeps its first
        occurrence.
        """
        return list(self._pairs)

    def layer_filter(self, names: Sequence[str]) -> list[str]:
        """The layers of ``names`` (a model's comparable layers, in order) that ``layers``
        selects: all of them, or those matching any listed name or ``fnmatch`` glob
        (case-sensitive), in the model's order. May be empty; see
        :meth:`unmatched_layer_patterns`."""
        patterns = self.layer_patterns()
        if patterns is None:
            return list(names)
        return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]

    def layer_patterns(self) -> list[str] | None:
        """The layer names/globs of ``layers`` (``None`` for ``all``)."""
        if self.layers == "all":
            return None
        return [self.layers] if isinstance(self.layers, str) else list(self.layers)

    def unmatched_layer_patterns(self, names: Sequence[str]) -> list[str]:
        """Entries of ``layers`` that match none of ``names`` (for a warning or an error)."""
        patterns = self.layer_patterns() or []
        return [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]

    def alignment_refs(self) -> list[PluginRef]:
        """The alignments, as plugin references, in suite order."""
        return list(self.alignments)

    def metric_refs(self) -> list[PluginRef]:
        """The metrics, as plugin references, in suite order."""
        return list(self.metrics)

    def executor_ref(self) -> PluginRef:
        """The executor (default ``local``)."""
        return self.executor

    def config_hash(self) -> str:
        """A 16-hex-digit SHA-256 of the normalised suite: every validated field with its
        default filled in, mappings with sorted keys, paths resolved. ``output``, ``cache``,
        ``executor`` and ``run`` are left out: where results are written, where jobs run
        and their time limits do not change them."""
        data = self.model_dump(
            mode="json", exclude={"output", "cache", "executor", "run", "tests"}
        )  # ``tests`` choose what the leaderboard scores, not what the results hold
        # keys added for foreign models, left out at their defaults: earlier hashes hold
        if data.get("layer_features") == "pooled":
            del data["layer_features"]
        for entry in data.get("models", []):
            for k in ("weights", "normalization", "input_size"):
                if entry.get(k) is None:
                    entry.pop(k, None)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- relations ------------------------------------------------------------------
    def relation(self, model_a: str, model_b: str) -> str:
        """How two model references relate (the results' ``relation`` column).

        - ``checkpoint``: the same model at different epochs;
        - ``seed``: same architecture, training config, data and labels; different seed;
        - ``dataset``: same architecture and training config and the same labels kind,
          different underlying data (``random_labels`` unwrapped; class subsets and
          different datasets differ);
        - ``labels``: same architecture and data, one with true labels and one with random
          labels (the training config may differ: random labels train longer, GM B.3);
        - ``random_labels``: same architecture, training and data, two different
          random-label realisations;
        - ``other``: anything else (different architectures, different training outside
          ``labels``, a checkpoint entry whose sidecar has no spec, different epochs of
          different models...). The training config is compared without ``save_epochs``.

        The labels kind is ``random_labels`` when the dataset is (or wraps) a
        ``random_labels`` dataset with ``fraction > 0``, its realisation is the variant's
        ``(seed, fraction)``; an entry's ``relation:`` labels ``task``, ``labels_seed`` and
        ``data`` override these (see :class:`RelationLabels`).
        """
        ida, ea = split_ref(model_a)
        idb, eb = split_ref(model_b)
        ma, mb = self._model(model_a), self._model(model_b)
        if ida == idb:
            if ea == eb:
                raise ValueError(f"{model_a!r} and {model_b!r} are the same model")
            return "checkpoint"
        if ea != eb:
            return "other"
        fa, fb = _facts(ma), _facts(mb)
        if fa is None or fb is None:
            return "other"
        if fa["architecture"] != fb["architecture"]:
            return "other"
        ka, kb = fa["labels"][0], fb["labels"][0]
        if ka != kb:  # random labels may train longer (GM B.3): training may differ
            return "labels" if fa["data"] == fb["data"] else "other"
        if fa["train"] != fb["train"]:
            return "other"
        if fa["data"] != fb["data"]:
            return "dataset"
        if ka == "random_labels":
            real_a, real_b = fa["labels"][1], fb["labels"][1]
            if real_a is None or real_b is None or real_a != real_b:
                return "random_labels"
        return "seed" if fa["seed"] != fb["seed"] else "other"


def split_ref(ref: str) -> tuple[str, int | None]:
    """``"id@seed:eN"`` -> ``("id@seed", N)``; ``"id@seed"`` -> ``("id@seed", None)``."""
    m = _REF_RE.match(ref)
    if m is None:
        raise ValueError(f"not a model reference: {ref!r} (expected id, id@seed or id@seed:eN)")
    base = m["id"] + (f"@{m['seed']}" if m["seed"] is not None else "")
    return base, int(m["epoch"]) if m["epoch"] is not None else None


# ----------------------------------------------------------------------------- facts


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _ref_dict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        return {"name": value, "params": {}}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        params = value.get("params") or {}
        return {"name": value["name"], "params": dict(params) if isinstance(params, dict) else {}}
    return None


def _unwrap_labels(ref: dict[str, Any]) -> tuple[dict[str, Any], tuple[Any, ...] | None]:
    """``(data, realisation)``: the dataset reference with every ``random_labels`` layer
    removed, and the ``(seed, fraction)`` of the outermost one with ``fraction > 0``."""
    params = dict(ref["params"])
    base = _ref_dict(params.get("base")) if "base" in params else None
    if ref["name"] == "random_labels" and base is not None:
        inner, inner_real = _unwrap_labels(base)
        fraction = params.get("fraction", 1.0)
        real = (params.get("seed"), fraction) if fraction not in (0, 0.0) else None
        return inner, real if real is not None else inner_real
    if base is not None:
        inner, inner_real = _unwrap_labels(base)
        return {"name": ref["name"], "params": {**params, "base": inner}}, inner_real
    return ref, None


def _facts(m: _Model) -> dict[str, Any] | None:
    """What ``same:`` and :meth:`Suite.relation` compare; ``None`` when unknown (and for
    foreign weights: how they were trained is not known)."""
    if m.spec is None or m.entry.weights is not None:
        return None
    spec = m.spec
    dataset = spec.dataset.model_dump(mode="json")
    data, real = _unwrap_labels(dataset)
    labels = m.entry.relation
    kind = labels.task or ("random_labels" if real is not None else "true_labels")
    if labels.labels_seed is not None:
        real = ("labels_seed", labels.labels_seed)
    elif kind == "true_labels":
        real = None
    train = spec.train.model_dump(mode="json")
    for name in ("save_epochs", *KEYLESS_TRAIN_FIELDS):  # neither changes the final weights
        train.pop(name, None)
    return {
        "id": m.entry.id,
        "architecture": _canon(spec.architecture.model_dump(mode="json")),
        "dataset": _canon(dataset),
        "data": _canon(labels.data) if labels.data is not None else _canon(data),
        "labels": (kind, _canon(real) if real is not None else None),
        "train": _canon(train),
        "seed": spec.seed,
    }


# ----------------------------------------------------------------------------- YAML


class _Doc:
    """A composed YAML document: plain data plus the node tree for line numbers."""

    def __init__(self, text: str, file: str):
        self.file = file
        if len(text) > MAX_SUITE_BYTES:
            raise SuiteError(
                [Problem(1, "", f"the suite is over the limit of {MAX_SUITE_BYTES:,} bytes", file)]
            )
        try:
            root = compose_bounded(text)  # depth, alias and expansion limits
            data = yaml.SafeLoader("").construct_document(root) if root is not None else None
        except BoundError as exc:
            raise SuiteError([Problem(exc.line, "", str(exc), file)]) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            what = exc.problem or exc.context or "unreadable"
            if exc.problem and exc.context and exc.context_mark is not None:
                what += f" ({exc.context} started at line {exc.context_mark.line + 1})"
            raise SuiteError([Problem(line, "", f"invalid YAML: {what}", file)]) from None
        except yaml.YAMLError as exc:
            raise SuiteError([Problem(1, "", f"invalid YAML: {exc}", file)]) from None
        self.root = root
        self.data = data

    def locate(self, loc: Sequence[Any]) -> int:
        """Line (1-based) of the node at ``loc``, or of its deepest existing ancestor.

        A value reached through a mapping key is reported at the key's line (a block
        collection starts on the next line; the key names it), a sequence item at its
        first line."""
        node = self.root
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for el in loc:
            if isinstance(node, yaml.MappingNode):
                hits = [
                    (k, v)
                    for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value == str(el)
                ]
                if not hits:
                    break
                k, node = hits[-1]
                line = k.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(el, int):
                if not 0 <= el < len(node.value):
                    break
                node = node.value[el]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def get(self, loc: Sequence[Any]) -> Any:
        """The data at ``loc`` (``KeyError`` if absent)."""
        cur = self.data
        for el in loc:
            if isinstance(cur, dict) and el in cur:
                cur = cur[el]
            elif isinstance(cur, list) and isinstance(el, int) and 0 <= el < len(cur):
                cur = cur[el]
            else:
                raise KeyError(el)
        return cur

    def duplicate_keys(self) -> list[tuple[list[Any], int, int]]:
        """``(loc, line, first_line)`` of every key repeated in one mapping (a node
        reached again through an alias is checked once, at its anchor)."""
        out: list[tuple[list[Any], int, int]] = []
        seen_nodes: set[int] = set()

        def walk(node: Any, loc: list[Any]) -> None:
            if id(node) in seen_nodes:
                return
            seen_nodes.add(id(node))
            if isinstance(node, yaml.MappingNode):
                seen: dict[str, int] = {}
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode):
                        line = k.start_mark.line + 1
                        if k.value in seen and k.value != "<<":
                            out.append(([*loc, k.value], line, seen[k.value]))
                        seen.setdefault(k.value, line)
                        walk(v, [*loc, k.value])
            elif isinstance(node, yaml.SequenceNode):
                for i, v in enumerate(node.value):
                    walk(v, [*loc, i])

        if self.root is not None:
            walk(self.root, [])
        return out


# ----------------------------------------------------------------------------- problems


def _unwrap_annotation(ann: Any) -> list[Any]:
    """The candidate inner types of an annotation (Annotated/Optional/Union unwrapped)."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        return _unwrap_annotation(typing.get_args(ann)[0])
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(ann):
            out.extend(_unwrap_annotation(arg))
        return out
    return [ann]


def _allowed_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Field names of the pydantic model that ``loc`` (a mapping's path) points into."""
    current: Any = model
    for el in loc:
        if isinstance(el, str) and el in _PAIR_TAGS:
            current = _PAIR_TAGS[el]
            continue
        if isinstance(el, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(str(el))
        if info is None:
            return []
        current = _inner_model(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _inner_model(ann: Any) -> Any:
    for cand in _unwrap_annotation(ann):
        origin = typing.get_origin(cand)
        if origin is list:
            return _inner_model(typing.get_args(cand)[0])
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


class _Problems:
    """Collects problems with their YAML lines."""

    def __init__(self, doc: _Doc):
        self.doc = doc
        self.items: list[Problem] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, loc: Sequence[Any], message: str) -> None:
        loc = _strip_tags(loc)
        line = self.doc.locate(loc)
        path = ".".join(str(el) for el in loc)
        self.items.append(Problem(line, path, message, self.doc.file))

    def add_validation(
        self, errors: Sequence[Any], prefix: Sequence[Any], model: type[BaseModel]
    ) -> None:
        """Map pydantic errors (``ValidationError.errors()``) of ``model`` validated at
        ``prefix`` to problems; a "missing" key that a misspelt key's suggestion names is
        left out."""
        suggested: set[tuple[Any, ...]] = set()
        rendered: list[tuple[tuple[Any, ...], str]] = []
        for err in errors:
            loc = tuple(err.get("loc", ()))
            kind = err.get("type", "")
            if kind == "extra_forbidden" and loc:
                allowed = _allowed_keys(model, loc[:-1])
                key = str(loc[-1])
                close = suggest(key, allowed, n=1)
                if close:
                    msg = f"unknown key {key!r}; did you mean {close[0]!r}?"
                    suggested.add((*_strip_tags(loc[:-1]), close[0]))
                elif allowed:
                    msg = f"unknown key {key!r}; allowed keys: {', '.join(allowed)}"
                else:
                    msg = f"unknown key {key!r}"
                rendered.append((loc, msg))
                continue
            if kind == "missing" and loc:
                rendered.append((loc, f"missing required key {str(loc[-1])!r}"))
                continue
            rendered.append((loc, _message(err)))
        for loc, msg in rendered:
            if msg.startswith("missing required key") and _strip_tags(loc) in suggested:
                continue  # the misspelt key's "did you mean" says it already
            self.add((*prefix, *loc), msg)


def _message(err: Any) -> str:
    """A pydantic error's message in the suite's words, with the offending value."""
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    msg = re.sub(r"a valid dictionary( or instance of \w+)?", "a mapping", msg)
    msg = msg.replace(" after validation", "")
    if kind in ("value_error", "assertion_error", "too_short", "too_long"):
        return msg
    inp = err.get("input")
    return msg + (f" (got {_short(inp)})" if _is_scalar(inp) else f" (got a {_kind(inp)})")


def _strip_tags(loc: Iterable[Any]) -> tuple[Any, ...]:
    """``loc`` without the tags of tagged unions (``<same>``, ``<list>``...)."""
    return tuple(el for el in loc if not (isinstance(el, str) and el in _TAGS))


# ----------------------------------------------------------------------------- checks


class _Checker:
    """Semantic checks that need the registry, the file system or several sections."""

    def __init__(self, doc: _Doc, problems: _Problems, registry: Registry, base_dir: Path):
        self.doc = doc
        self.problems = problems
        self.registry = registry
        self.base_dir = base_dir

    # -- plugins ----------------------------------------------------------------------
    def plugin(self, kind: str, ref: PluginRef, loc: tuple[Any, ...]) -> Any:
        """Check a plugin reference at ``loc``; the instance, or ``None`` on a problem."""
        raw = self._raw(loc)
        name_loc = (*loc, "name") if isinstance(raw, dict) else loc
        try:
            rec, _ = self.registry.resolve(kind, ref.name)
        except UnknownPluginError as exc:
            self.problems.add(name_loc, str(exc))
            return None
        params_loc = (*loc, "params")
        if kind == "dataset" and "base" in ref.params:
            base = ref.params["base"]
            try:
                base_ref = PluginRef.model_validate(_ref_from_name(base))
            except ValidationError as exc:
                self.problems.add_validation(exc.errors(), (*params_loc, "base"), PluginRef)
                return None
            if self.plugin("dataset", base_ref, (*params_loc, "base")) is None:
                return None
        try:
            inst = self.registry.create(kind, ref.name, **ref.params)
            if kind == "dataset" and callable(getattr(inst, "check", None)):
                try:
                    inst.check()  # files exist: before any compute (issue 13)
                except ValueError as exc:
                    key = next((k for k in ("root", "path") if k in ref.params), None)
                    self.problems.add((*params_loc, key) if key else loc, str(exc))
                    return None
            return inst
        except ValidationError as exc:
            allowed = [p for p in rec.obj.param_defaults() if p != rec.obj.name_argument]
            for err in exc.errors():
                eloc = tuple(err.get("loc", ()))
                param = str(eloc[0]) if eloc else ""
                etype = err.get("type", "")
                if etype == "unexpected_keyword_argument":
                    close = suggest(param, allowed, n=1)
                    hint = (
                        f"; did you mean {close[0]!r}?"
                        if close
                        else f"; {kind} {ref.name!r} takes: {', '.join(allowed) or 'none'}"
                    )
                    self.problems.add((*params_loc, *eloc), f"unknown parameter {param!r}{hint}")
                elif etype == "missing_argument":
                    self.problems.add(
                        params_loc if ref.params else loc,
                        f"{kind} {ref.name!r} needs the parameter {param!r}",
                    )
                else:
                    self.problems.add((*params_loc, *eloc), _message(err))
        except UnknownPluginError as exc:
            self.problems.add(params_loc, str(exc))
        except Exception as exc:  # a plugin's own check, reported at its line
            text = str(exc) or type(exc).__name__
            self.problems.add(params_loc if ref.params else loc, f"invalid {kind}: {text}")
        return None

    def _raw(self, loc: Sequence[Any]) -> Any:
        try:
            return self.doc.get(loc)
        except KeyError:
            return None

    # -- training ---------------------------------------------------------------------
    def training(self, training: dict[str, Any]) -> bool:
        try:
            TrainConfig.model_validate(training)
        except ValidationError as exc:
            self.problems.add_validation(exc.errors(), ("training",), TrainConfig)
            return False
        return True

    def train_config(
        self, training: dict[str, Any], training_ok: bool, entry: ModelEntry, loc: tuple
    ) -> TrainConfig | None:
        merged = {**(training if training_ok else {}), **entry.train}
        try:
            cfg = TrainConfig.model_validate(merged)
        except ValidationError as exc:
            own = [e for e in exc.errors() if e.get("loc") and e["loc"][0] in entry.train]
            self.problems.add_validation(own, (*loc, "train"), TrainConfig)
            return None
        bad = sorted(e for e in cfg.save_epochs if not 0 <= e <= cfg.epochs)
        if bad:
            where = (*loc, "train", "save_epochs")
            if "save_epochs" not in entry.train:
                where = ("training", "save_epochs")
            self.problems.add(where, f"save_epochs must lie in [0, epochs={cfg.epochs}]; got {bad}")
            return None
        return cfg

    # -- checkpoints ------------------------------------------------------------------
    def checkpoint(self, entry: ModelEntry, loc: tuple) -> tuple[Path, ModelSpec | None, tuple]:
        from simbench.train.checkpoint import MODEL_FILE, epoch_file, sidecar_path

        assert entry.checkpoint is not None
        path = _resolve_path(entry.checkpoint, self.base_dir)
        if path.is_dir():
            path = path / MODEL_FILE
        elif path.suffix == ".json":
            path = path.with_suffix(".safetensors")
        where = (*loc, "checkpoint")
        if not path.is_file():
            self.problems.add(where, f"no checkpoint file {str(path)!r}")
            return path, None, ()
        side = sidecar_path(path)
        if not side.is_file():
            self.problems.add(
                where,
                f"{str(path)!r} has no sidecar {side.name} (written by simbench's trainer, "
                "after the weights: the checkpoint is incomplete or not simbench's)",
            )
            return path, None, ()
        spec: ModelSpec | None = None
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
            spec = ModelSpec.model_validate(meta["spec"])
        except (OSError, ValueError, KeyError, TypeError):
            spec = None
        epochs: tuple[int, ...] = ()
        if spec is not None:
            epochs = tuple(
                e
                for e in sorted(spec.train.save_epochs)
                if (path.parent / epoch_file(e)).is_file()
                and sidecar_path(path.parent / epoch_file(e)).is_file()
            )
        return path, spec, epochs


def _resolve_path(text: str, base_dir: Path) -> Path:
    """``text`` with ``~`` and ``$VARS`` expanded, relative to ``base_dir``, normalised."""
    path = Path(os.path.expandvars(os.path.expanduser(text)))
    return Path(os.path.abspath(path if path.is_absolute() else base_dir / path))


# ----------------------------------------------------------------------------- loading


def load_suite(path: str | os.PathLike, *, registry: Registry | None = None) -> Suite:
    """Read, validate and expand the suite file ``path``; raise :class:`SuiteError` listing
    every problem (``FILE:LINE: key.path: what is wrong``)."""
    p = Path(path)
    try:
        text = read_suite_text(p)  # regular files of at most MAX_SUITE_BYTES only
    except BoundError as exc:
        raise SuiteError([Problem(exc.line, "", str(exc), str(p))]) from None
    except OSError as exc:
        raise SuiteError(
            [Problem(0, "", f"cannot read the suite: {exc.strerror}", str(p))]
        ) from None
    except UnicodeDecodeError:
        raise SuiteError([Problem(0, "", "the suite is not UTF-8 text", str(p))]) from None
    return parse_suite(text, file=str(p), base_dir=p.resolve().parent, registry=registry)


def parse_suite(
    text: str,
    *,
    file: str = "<string>",
    base_dir: str | os.PathLike | None = None,
    registry: Registry | None = None,
) -> Suite:
    """Validate and expand suite YAML ``text``; relative paths are resolved against
    ``base_dir`` (default: the working directory). See :func:`load_suite`."""
    base = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
    doc = _Doc(text, file)  # before loading the plugins: a bad file is refused at once
    registry = registry or default_registry()
    problems = _Problems(doc)
    data = doc.data
    if data is None:
        problems.add([], "the suite is empty (it needs at least name, models and metrics)")
        raise SuiteError(problems.items)
    if not isinstance(data, dict):
        problems.add([], f"a suite is a mapping of keys (name, models, ...); got a {_kind(data)}")
        raise SuiteError(problems.items)
    for loc, line, first in doc.duplicate_keys():
        problems.items.append(
            Problem(line, ".".join(map(str, loc)), f"duplicate key (first at line {first})", file)
        )

    suite: Suite | None = None
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        problems.add_validation(exc.errors(), (), Suite)

    checker = _Checker(doc, problems, registry, base)
    models = _check_models(data, checker)
    _check_plugins(data, checker)
    # (identity between layers of unequal widths is no validation error: a run-time cell error)
    pairs = _check_pairs(data, models, checker) if models is not None else None
    _check_before_compute(data, problems, base)  # numbers, devices, output and cache folders
    if problems or suite is None or models is None or pairs is None:
        raise SuiteError(problems.items)

    # normalise: resolved paths, probe seed
    output = _resolve_path(suite.output or f"runs/{suite.name}", base)
    update: dict[str, Any] = {"output": str(output)}
    if suite.cache is not None:
        update["cache"] = str(_resolve_path(suite.cache, base))
    paths = {m.index: m.path for m in models if m.path is not None and m.entry.weights is None}
    update["models"] = [
        e.model_copy(update={"checkpoint": str(paths[i])}) if i in paths else e
        for i, e in enumerate(suite.models)
    ]
    if suite.probe.seed is None:
        update["probe"] = suite.probe.model_copy(update={"seed": suite.seed})
    ex_folder = suite.executor.params.get("folder")  # e.g. the slurm executor's log folder
    if isinstance(ex_folder, str):
        params = {**suite.executor.params, "folder": str(_resolve_path(ex_folder, base))}
        update["executor"] = suite.executor.model_copy(update={"params": params})
    suite = suite.model_copy(update=update)
    suite._file = file
    suite._models = {m.id: m for m in models}
    for m in models:
        m.entry = suite.models[m.index]
    suite._pairs = pairs
    _materialize_foreign(suite, models, problems)
    _check_layer_names(suite, problems, registry)
    if problems:
        raise SuiteError(problems.items)
    return suite


def _check_before_compute(data: dict[str, Any], problems: _Problems, base: Path) -> None:
    """Numbers, devices and writable folders (:mod:`simbench.suite_checks`), on the raw
    data so that they are reported with every other problem."""
    from simbench import suite_checks

    suite_checks.check_numbers(data, problems.add)
    seed, draws = data.get("seed", 0), data.get("draws", 1)
    if (
        type(seed) is int
        and type(draws) is int
        and seed + draws - 1 > suite_checks.INT64_MAX >= seed
    ):
        problems.add(("seed",), "seed + draws - 1 (the last draw's seed) must be below 2^63")
    executor = _ref_dict(data.get("executor", "local"))
    elsewhere = executor is not None and executor["name"] != "local"  # e.g. slurm: GPU nodes
    suite_checks.check_devices(data, problems.add, gpu_expected_elsewhere=elsewhere)
    name = data.get("name")
    output = data.get("output")
    if output is None and isinstance(name, str) and _NAME_RE.match(name):
        output = f"runs/{name}"
    folders = []
    for key in ("output", "cache"):
        if data.get(key) == "":
            problems.add((key,), "an empty path; leave the key out for the default")
    if isinstance(output, str) and output:
        folders.append(
            (("output",) if "output" in data else ("name",), _resolve_path(output, base))
        )
    cache = data.get("cache")
    if isinstance(cache, str) and cache:
        folders.append((("cache",), _resolve_path(cache, base)))
    suite_checks.check_writable(folders, problems.add)


def _check_layer_names(suite: Suite, problems: _Problems, registry: Registry) -> None:
    """Every name or glob of ``layers`` matches a layer of some model and every model
    keeps a layer; the layers come from each architecture built on the ``meta`` device
    (only when ``layers`` is not ``all``: then torch is not imported at load time)."""
    from simbench import suite_checks

    patterns = suite.layer_patterns()
    if patterns is None:
        return
    by_arch: dict[str, list[str] | None] = {}
    names: dict[str, list[str]] = {}
    for mid, m in suite._models.items():
        if m.spec is None:
            continue  # a checkpoint without a readable spec: its layers are unknown
        key = _canon(m.spec.architecture.model_dump(mode="json"))
        if key not in by_arch:
            try:
                arch = registry.create(
                    "architecture", m.spec.architecture.name, **m.spec.architecture.params
                )
                by_arch[key] = suite_checks.layer_names(arch)
            except Exception:  # not this check's to report: the run says what is wrong
                by_arch[key] = None
        if by_arch[key] is not None:
            names[mid] = by_arch[key]
    where = ("layers",) if isinstance(suite.layers, str) else None
    suite_checks.check_layers(
        patterns,
        names,
        lambda loc, msg: problems.add(where or loc, msg),
        fnmatch.fnmatchcase,
    )


def _kind(value: Any) -> str:
    kinds = {list: "list", dict: "mapping", str: "string", int: "number", float: "number"}
    return kinds.get(type(value), "boolean" if isinstance(value, bool) else type(value).__name__)


def _check_models(data: dict[str, Any], checker: _Checker) -> list[_Model] | None:
    """Check every model entry; the expanded models, or ``None`` if any entry is invalid."""
    problems = checker.problems
    raw_training = data.get("training", {})
    training = raw_training if isinstance(raw_training, dict) else {}
    training_ok = checker.training(training) if isinstance(raw_training, dict) else False
    raw_models = data.get("models")
    if not isinstance(raw_models, list):
        return None
    out: list[_Model] = []
    ok = True
    first_line: dict[str, tuple[int, int]] = {}
    for i, raw in enumerate(raw_models):
        loc = ("models", i)
        try:
            entry = ModelEntry.model_validate(raw)
        except ValidationError:
            ok = False  # reported by the whole-suite validation; still check its plugins
            for key, kind in (("architecture", "architecture"), ("dataset", "dataset")):
                if isinstance(raw, dict) and key in raw:
                    try:
                        ref = _REF_ADAPTER.validate_python(raw[key])
                    except ValidationError:
                        continue
                    checker.plugin(kind, ref, (*loc, key))
            continue
        if entry.id in first_line:
            j, line = first_line[entry.id]
            problems.add((*loc, "id"), f"duplicate model id {entry.id!r} (models.{j}, line {line})")
            ok = False
            continue
        first_line[entry.id] = (i, checker.doc.locate((*loc, "id")))
        if entry.checkpoint is not None:
            bad = [
                k
                for k in ("architecture", "dataset", "seed", "seeds", "train", "weights")
                if k in (raw or {})
            ]
            for k in bad:
                problems.add(
                    (*loc, k),
                    f"a checkpoint model takes no {k!r} (its sidecar records how it was made)",
                )
            path, spec, epochs = checker.checkpoint(entry, loc)
            ok = ok and not bad and path.is_file()
            out.append(_Model(entry.id, i, entry, None, spec, path, epochs))
            continue
        if entry.weights is not None:
            ok = _check_foreign(entry, raw, loc, checker) and ok
            path = _resolve_path(entry.weights, checker.base_dir)
            out.append(_Model(entry.id, i, entry, None, None, path, ()))
            continue
        foreign_only = [k for k in ("normalization", "input_size") if k in (raw or {})]
        for k in foreign_only:
            problems.add((*loc, k), f"{k!r} applies to foreign 'weights' only")
        ok = ok and not foreign_only
        missing = [k for k in ("architecture", "dataset") if getattr(entry, k) is None]
        for k in missing:
            problems.add((*loc, k), f"missing required key {k!r} (or give a 'checkpoint')")
        if entry.seed is not None and entry.seeds is not None:
            problems.add((*loc, "seeds"), "give either 'seed' or 'seeds', not both")
        seen: set[int] = set()
        for j, s in enumerate(entry.seeds or []):
            if s in seen:
                problems.add((*loc, "seeds", j), f"duplicate seed {s}")
            seen.add(s)
        arch = (
            checker.plugin("architecture", entry.architecture, (*loc, "architecture"))
            if (entry.architecture is not None)
            else None
        )
        dset = (
            checker.plugin("dataset", entry.dataset, (*loc, "dataset"))
            if (entry.dataset is not None)
            else None
        )
        cfg = checker.train_config(training, training_ok, entry, loc)
        if missing or arch is None or dset is None or cfg is None:
            ok = False
            continue
        if (entry.seed is not None and entry.seeds is not None) or len(seen) != len(
            entry.seeds or []
        ):
            ok = False
            continue
        assert entry.architecture is not None and entry.dataset is not None
        for s in entry.seed_list():
            spec = ModelSpec(
                architecture=entry.architecture, dataset=entry.dataset, seed=s, train=cfg
            )
            out.append(
                _Model(f"{entry.id}@{s}", i, entry, s, spec, None, tuple(sorted(cfg.save_epochs)))
            )
    return out if ok and out else None


def _check_foreign(entry: ModelEntry, raw: Any, loc: tuple, checker: _Checker) -> bool:
    """A foreign-weights entry: an architecture, a weights path that exists, nothing of a
    training run. (Whether the state dict fits is checked when it is materialised.)"""
    problems = checker.problems
    bad = [k for k in ("dataset", "seed", "seeds", "train", "checkpoint") if k in (raw or {})]
    for k in bad:
        problems.add((*loc, k), f"a foreign-weights model takes no {k!r}")
    if entry.architecture is None:
        problems.add((*loc, "architecture"), "foreign 'weights' need an 'architecture'")
        return False
    arch = checker.plugin("architecture", entry.architecture, (*loc, "architecture"))
    assert entry.weights is not None
    path = _resolve_path(entry.weights, checker.base_dir)
    if not (path.is_file() or path.is_dir()):
        problems.add((*loc, "weights"), f"no weights file or folder {str(path)!r}")
        return False
    return arch is not None and not bad


def _materialize_foreign(suite: Suite, models: list[_Model], problems: _Problems) -> None:
    """Write each foreign-weights model as a checkpoint in the cache (see
    :mod:`simbench.models.materialize`); a state dict that does not fit is a problem of its
    entry's ``weights`` line."""
    from simbench.models.materialize import materialize

    for m in models:
        if m.entry.weights is None:
            continue
        entry = m.entry
        assert entry.architecture is not None and m.path is not None
        norm = entry.normalization.model_dump(exclude_none=True) if entry.normalization else None
        try:
            m.path, m.spec = materialize(
                entry.architecture, m.path, suite.cache_dir, norm, entry.input_size
            )
        except ValueError as exc:
            problems.add(("models", m.index, "weights"), str(exc))


def _check_plugins(data: dict[str, Any], checker: _Checker) -> None:
    """Probe dataset, alignments, metrics, executor; weight metrics need an alignment."""
    ref = _REF_ADAPTER
    probe = data.get("probe")
    if isinstance(probe, dict) and "dataset" in probe:
        try:
            checker.plugin("dataset", ref.validate_python(probe["dataset"]), ("probe", "dataset"))
        except ValidationError:
            pass  # reported by the whole-suite validation
    needs_alignment: list[tuple[int, str]] = []
    for section, kind in (("alignments", "alignment"), ("metrics", "metric")):
        items = data.get(section)
        if not isinstance(items, list):
            continue
        for i, raw in enumerate(items):
            try:
                r = ref.validate_python(raw)
            except ValidationError:
                continue
            inst = checker.plugin(kind, r, (section, i))
            if inst is not None and kind == "metric" and getattr(inst, "needs_alignment", False):
                needs_alignment.append((i, r.name))
    alignments = data.get("alignments", ["identity"])
    if needs_alignment and isinstance(alignments, list) and not alignments:
        i, name = needs_alignment[0]
        checker.problems.add(
            ("alignments",),
            f"metric {name!r} (metrics.{i}) scores aligned weights: list at least one alignment",
        )
    if "executor" in data:
        try:
            r = ref.validate_python(data["executor"])
        except ValidationError:
            return
        checker.plugin("executor", r, ("executor",))
    else:
        checker.plugin("executor", PluginRef(name="local"), ("executor",))


def _check_pairs(
    data: dict[str, Any], models: list[_Model], checker: _Checker
) -> list[tuple[str, str]] | None:
    """Expand ``pairs``; ``None`` (with problems recorded) if any item is impossible."""
    problems = checker.problems
    raw_pairs = data.get("pairs", [{"all": True}])
    if not isinstance(raw_pairs, list):
        return None
    by_id = {m.id: m for m in models}
    entries: dict[str, list[_Model]] = {}
    for m in models:
        entries.setdefault(m.entry.id, []).append(m)
    adapter = TypeAdapter(PairItem)
    out: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    ok = True

    def resolve(ref: Any, loc: tuple, *, many: bool = False) -> list[str] | None:
        """Expanded references (``id@seed[:eN]``) for ``ref``; ``None`` on a problem."""
        m = _REF_RE.match(ref) if isinstance(ref, str) else None
        if m is None:
            problems.add(
                loc, f"not a model reference: {ref!r} (expected id, id@seed or id@seed:eN)"
            )
            return None
        mid, seed, epoch = m["id"], m["seed"], m["epoch"]
        if mid not in entries:
            close = suggest(ref, list(by_id) + list(entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.add(loc, f"unknown model {ref!r}{hint} Models: {', '.join(by_id)}")
            return None
        group = entries[mid]
        if group[0].path is not None:  # a checkpoint entry
            if seed is not None:
                problems.add(
                    loc, f"{mid!r} is a checkpoint model: refer to it as {mid!r}, no @seed"
                )
                return None
            chosen = group
        elif seed is not None:
            chosen = [g for g in group if g.seed == int(seed)]
            if not chosen:
                seeds = ", ".join(str(g.seed) for g in group)
                problems.add(loc, f"model {mid!r} has no seed {seed} (its seeds: {seeds})")
                return None
        elif len(group) > 1 and not many:
            alts = " or ".join(repr(g.id) for g in group)
            problems.add(loc, f"{mid!r} has {len(group)} seeds: write {alts}")
            return None
        else:
            chosen = group
        if epoch is None:
            return [g.id for g in chosen]
        out_refs = []
        for g in chosen:
            if int(epoch) not in g.epochs:
                saved = ", ".join(map(str, g.epochs)) if g.epochs else "none"
                problems.add(
                    loc,
                    f"{g.id!r} saves no checkpoint at epoch {epoch} (train.save_epochs: {saved})",
                )
                return None
            out_refs.append(f"{g.id}:e{int(epoch)}")
        return out_refs

    finals = models  # final states, declaration order
    for i, raw in enumerate(raw_pairs):
        loc: tuple[Any, ...] = ("pairs", i)
        try:
            item = adapter.validate_python(raw)
        except ValidationError:
            ok = False  # reported by the whole-suite validation
            continue
        new: list[tuple[str, str]] = []
        if isinstance(item, list):
            a = resolve(item[0], (*loc, 0))
            b = resolve(item[1], (*loc, 1))
            if a is None or b is None:
                ok = False
                continue
            if a[0] == b[0]:
                problems.add(loc, f"a model paired with itself: {a[0]!r}")
                ok = False
                continue
            new = [(a[0], b[0])]
        elif isinstance(item, AllPairs):
            new = [(x.id, y.id) for j, x in enumerate(finals) for y in finals[j + 1 :]]
            if not new:
                where = loc if "pairs" in data else ("models",)  # the default `all: true`
                problems.add(where, "the suite has a single model: no pair to compare")
                ok = False
                continue
        elif isinstance(item, SamePairs):
            facts = {m.id: _facts(m) for m in finals}
            for j, x in enumerate(finals):
                for y in finals[j + 1 :]:
                    fx, fy = facts[x.id], facts[y.id]
                    if fx is not None and fy is not None and all(fx[f] == fy[f] for f in item.same):
                        new.append((x.id, y.id))
            if not new:
                problems.add(
                    (*loc, "same"),
                    f"generates no pair: no two models share {', '.join(item.same)}",
                )
                ok = False
                continue
        else:
            assert isinstance(item, CheckpointPairs)
            where = (*loc, "checkpoints")
            if isinstance(item.checkpoints, str) and ":e" in item.checkpoints:
                problems.add(where, "name the model, not one of its checkpoints (drop ':eN')")
                ok = False
                continue
            refs = resolve(item.checkpoints, where, many=True)
            if refs is None:
                ok = False
                continue
            for r in refs:
                m = by_id[r]
                if not m.epochs:
                    problems.add(
                        where,
                        f"{r!r} saves no intermediate checkpoints: set its train.save_epochs "
                        "(e.g. [0, 1, 2])",
                    )
                    ok = False
                    new = []
                    break
                new.extend((f"{r}:e{e}", r) for e in m.epochs)
            if not new:
                ok = False
                continue
        for a, b in new:
            key = (a, b) if a <= b else (b, a)
            if key not in seen:
                seen.add(key)
                out.append((a, b))
    return out if ok else None
