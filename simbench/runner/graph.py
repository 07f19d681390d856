"""The job graph of a suite: models, pairs, layers, cells, their cache keys and what to run.

:func:`build_plan` turns a validated :class:`~simbench.suite.Suite` into a :class:`Plan`:
every output of every stage with its content address, computed from configuration
alone (never from the contents of other outputs), so the whole graph and what is
already cached are known before anything runs (``--dry-run``).

Keys (:func:`simbench.runner.cache.make_key` of exactly these):

- model: a trained model's ``ModelSpec.key()`` (+ ``"epoch", N`` for ``:eN``); a
  checkpoint entry's recorded weights SHA-256 (+ epoch);
- extract, one per (pair, layer): both model keys, the layer, the probe config (dataset,
  split, images, seed, positions, batch size, blocks, null pairings), the extract
  options (sites, fourth-order sums, activations kept) and the simbench version; plus
  one per pair for the pooled outputs when ``layer_matrix``;
- align: extract key, alignment name, params and plugin version (package, package
  version, class ``version``);
- score: extract key (weights: also the align key), metric name, params (the draw's
  seed included) and plugin version, the draw;
- checks: both model keys, layer, probe, every metric and the alignment with versions.

:meth:`Plan.schedule` decides, stage by stage from the last, what must run: a score
cell runs when its record is missing or corrupt (or ``--force``); an upstream output
runs only when a cell or alignment that runs needs it and it is missing or corrupt —
so a warm suite reads nothing but its score records, and a damaged extract file whose
scores are all cached costs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simbench.errors import SimbenchError
from simbench.io import sha256_file
from simbench.runner.cache import Cache, make_key
from simbench.runner.pair_stats import extract_complete
from simbench.runner.represent import RepresentJob, StoreOptions
from simbench.runner.stages import (
    STAGES,
    AlignJob,
    AlignTask,
    ChecksJob,
    ExtractJob,
    ExtractOptions,
    ModelRef,
    ProbeConfig,
    ScoreCell,
    ScoreJob,
    TrainJob,
    align_done,
    extract_inputs,
    score_inputs,
)

__all__ = [
    "Cell",
    "ModelNode",
    "PairNode",
    "Plan",
    "PlanError",
    "Schedule",
    "build_plan",
    "label_of",
]


class PlanError(SimbenchError, ValueError):
    """A suite that validates but cannot be planned (e.g. a checkpoint without a spec)."""


def label_of(name: str, params: dict[str, Any]) -> str:
    """A plugin's display label: ``name``, or ``name(k=v, ...)`` with parameters in sorted
    order (:func:`simbench.runner.results.label`, the convention of
    :func:`simbench.invariance.check_invariances` and the report)."""
    from simbench.runner.results import label, params_json

    return label(name, params_json(params))


def plugin_version(kind: str, name: str) -> dict[str, str]:
    """``{package, version, plugin}``: what a plugin's cache keys depend on."""
    from simbench.registry import default_registry

    rec, _ = default_registry().resolve(kind, name)
    return {
        "package": rec.package,
        "version": rec.version,
        "plugin": str(getattr(rec.obj, "version", "1")),
    }


def _simbench_version() -> str:
    import simbench

    return simbench.__version__


# ----------------------------------------------------------------------------- nodes


@dataclass
class ModelNode:
    """One model of the suite (a trained model, one of its epochs, or a checkpoint)."""

    ref: str
    key: str
    path: Path  # weights file (.safetensors)
    spec: Any  # ModelSpec | None
    train_key: str | None  # ModelSpec.key() of the training run that produces it
    epoch: int | None
    layers: list[str]  # selected comparable (trainable) layers, in depth order
    all_layers: list[str]
    represent_key: str = ""  # its store (simbench.runner.represent)

    @property
    def model_ref(self) -> ModelRef:
        from simbench.train.checkpoint import MODEL_FILE

        final = self.path.name == MODEL_FILE
        return ModelRef(
            self.ref, self.key, str(self.path), self.train_key, None if final else self.epoch
        )

    @property
    def arch(self) -> str | None:
        return self.spec.architecture.name if self.spec is not None else None

    @property
    def dataset(self) -> str | None:
        return self.spec.dataset.name if self.spec is not None else None

    @property
    def seed(self) -> int | None:
        return self.spec.seed if self.spec is not None else None


@dataclass
class PairNode:
    a: ModelNode
    b: ModelNode
    relation: str
    layers: list[str]  # layers compared (shared names, A's order)
    extract: dict[str, str]  # layer -> extract key
    pooled_key: str | None = None


@dataclass
class Cell:
    """One row of the results table and the score cell that computes it."""

    pair: PairNode
    layer_a: str
    layer_b: str
    alignment: str | None  # plugin name of a weight-metric row; None for representation rows
    alignment_params: str | None  # canonical JSON (sorted keys) or None
    metric: str  # plugin name
    metric_params: str | None  # the suite's parameters, canonical JSON, or None
    features: str | None  # positions | pooled | flattened | maps; None for weight rows
    depth_a: int  # index of layer_a in A's architecture layer order
    depth_b: int
    draw: int
    consumes: str
    higher_is_better: bool
    packages: dict[str, str]
    score: ScoreCell


@dataclass
class Schedule:
    """What a run must compute (outputs per stage) and the jobs that compute them."""

    train: list[TrainJob] = field(default_factory=list)
    represent: list[RepresentJob] = field(default_factory=list)  # part of extract
    extract: list[ExtractJob] = field(default_factory=list)
    align: list[AlignJob] = field(default_factory=list)
    score: list[Any] = field(default_factory=list)  # ScoreJob | ChecksJob
    outputs: dict[str, int] = field(default_factory=dict)  # stage -> outputs to compute
    totals: dict[str, int] = field(default_factory=dict)  # stage -> all outputs

    def jobs(self, stage: str) -> list[Any]:
        return getattr(self, stage)


@dataclass
class Plan:
    """Every model, pair and cell of a suite with their keys (see the module docstring)."""

    suite: Any
    cache: Cache
    models: dict[str, ModelNode]
    pairs: list[PairNode]
    cells: list[Cell]
    probe: ProbeConfig
    options: ExtractOptions
    align_tasks: dict[str, list[AlignTask]]  # extract key -> tasks
    checks: ChecksJob | None
    warnings: list[str]
    store_options: StoreOptions = field(default_factory=StoreOptions)

    @property
    def models_dir(self) -> Path:
        return self.cache.root / "models"

    def trained_specs(self) -> dict[str, Any]:
        """Training-run key -> ModelSpec, in suite order."""
        out: dict[str, Any] = {}
        for m in self.models.values():
            if m.train_key is not None:
                out.setdefault(m.train_key, m.spec)
        return out

    # -- state of the cache -------------------------------------------------------------
    def _model_ok(self, m: ModelNode, verify: bool) -> bool:
        from simbench.train.checkpoint import is_complete, load_checkpoint

        if not is_complete(m.path):
            return False
        if not verify:
            return True
        import warnings

        from simbench.runner.cache import CacheCorruptionWarning, CacheKeyMismatchWarning

        try:
            _, meta = load_checkpoint(m.path)
        except (ValueError, OSError) as exc:
            warnings.warn(
                f"checkpoint {m.path} is corrupt ({exc}); it will be trained again",
                CacheCorruptionWarning,
                stacklevel=2,
            )
            return False
        try:
            m.model_ref.check(meta)
        except ValueError as exc:
            warnings.warn(f"{exc}; it will be trained again", CacheKeyMismatchWarning, stacklevel=2)
            return False
        return True

    def schedule(
        self, force: str | None = None, *, verify: bool = True, threads: int | None = None
    ) -> Schedule:
        """The jobs to run, from the last stage up (see the module docstring).

        ``verify`` checks SHA-256 digests and repairs (warns, deletes) corrupt files, and
        deletes the outputs ``force`` recomputes (jobs skip outputs that exist once they
        hold their locks: a concurrent run wrote them); with ``verify=False`` (dry runs)
        only existence is checked and nothing is touched.
        """
        from simbench.train.checkpoint import MODEL_FILE, is_complete

        if force is not None and force not in STAGES:
            raise ValueError(f"--force takes one of {', '.join(STAGES)}; got {force!r}")
        f = STAGES.index(force) if force is not None else len(STAGES)
        cache, root = self.cache, str(self.cache.root)
        sched = Schedule()

        # score (and the invariance checks, which belong to the score stage)
        run_cells: list[Cell] = []
        limit = self.suite.run.cell_timeout_s
        for c in self.cells:
            dirty = f <= 3 and (f != 2 or c.score.kind == "weights")
            inputs = score_inputs(c.score)
            if verify:
                rec = cache.get_json("score", c.score.key, inputs=inputs)
                stopped = rec is not None and rec.get("timeout_s") is not None
                # a cell stopped at a time limit runs again under a larger one
                if stopped and (limit is None or rec["timeout_s"] < limit):
                    rec = None
                missing = rec is None
            else:
                missing = not cache.has_json("score", c.score.key, verify)
            if dirty or missing:
                run_cells.append(c)
                if verify:  # forced, or stopped at a smaller limit: no job may take it
                    cache.discard("score", c.score.key)  # for done
        run_checks = self.checks is not None and (
            (f <= 3 and f != 2) or not cache.has_json("checks", self.checks.key, verify)
        )
        if run_checks and verify and self.checks is not None:
            cache.discard("checks", self.checks.key)
        groups: dict[tuple[int, str | None], list[ScoreCell]] = {}
        pair_index = {id(p): i for i, p in enumerate(self.pairs)}
        for c in run_cells:
            # a pair's layer-matrix cells form one job, so that each (model, layer) is
            # prepared once for all its layer pairs (Metric.prepare, issue 11)
            layer = None if c.score.kind == "pooled" else c.layer_a
            groups.setdefault((pair_index[id(c.pair)], layer), []).append(c.score)
        sched.score = [ScoreJob(root, tuple(cells), threads) for cells in groups.values()]
        if run_checks:
            assert self.checks is not None
            sched.score.append(_with_threads(self.checks, threads))
        sched.outputs["score"] = len(run_cells) + int(run_checks)
        sched.totals["score"] = len(self.cells) + int(self.checks is not None)

        # align
        needed_align = {c.score.align_key for c in run_cells if c.score.kind == "weights"}
        run_align: dict[str, list[AlignTask]] = {}
        n_align = 0
        for ekey, tasks in self.align_tasks.items():
            todo = [
                t
                for t in tasks
                if t.key in needed_align
                and (f <= 2 or not align_done(cache, t.key, verify, inputs=[ekey]))
            ]
            if todo:
                run_align[ekey] = todo
                n_align += len(todo)
                for t in todo if f <= 2 and verify else ():
                    cache.discard("align", t.key)
        sched.align = [AlignJob(root, ekey, tuple(t), threads) for ekey, t in run_align.items()]
        sched.outputs["align"] = n_align
        sched.totals["align"] = sum(len(t) for t in self.align_tasks.values())

        # extract
        needed_extract = {c.score.extract_key for c in run_cells} | set(run_align)
        n_extract, total_extract = 0, 0
        check_models: set[str] = set()
        if run_checks:
            assert self.checks is not None
            check_models = {self.checks.model_a.ref, self.checks.model_b.ref}
        extract_pairs: list[PairNode] = []
        seen: dict[str, bool] = {}  # side entries and stores checked (shared by pairs)
        for pair in self.pairs:
            keys = [*pair.extract.items()]
            if pair.pooled_key:
                keys.append(("", pair.pooled_key))
            total_extract += len(keys)
            inputs = extract_inputs(pair.a.model_ref, pair.b.model_ref)
            todo = [
                (layer, k)
                for layer, k in keys
                if k in needed_extract
                and (f <= 1 or not extract_complete(cache, k, verify, verify, inputs, seen))
            ]
            if not todo:
                continue
            for _, k in todo if f <= 1 and verify else ():
                cache.discard("extract", k)
            n_extract += len(todo)
            extract_pairs.append(pair)
            layers = tuple((layer, k) for layer, k in todo if layer)
            pooled = any(not layer for layer, _ in todo)
            # different architectures: a shared layer name may differ in spatial size (a
            # paired-layer failure); the layer matrix is then extracted by a job of its own
            split = pooled and bool(layers) and _arch_ref(pair.a) != _arch_ref(pair.b)
            for lay, pool in ((layers, False), ((), True)) if split else ((layers, pooled),):
                sched.extract.append(
                    ExtractJob(
                        root,
                        pair.a.model_ref,
                        pair.b.model_ref,
                        self.probe,
                        self.options,
                        lay,
                        pair.pooled_key if pool else None,
                        (tuple(pair.a.layers), tuple(pair.b.layers)) if pool else ((), ()),
                        threads=threads,
                        flat=self.suite.layer_features == "flat",
                        store_a=pair.a.represent_key,
                        store_b=pair.b.represent_key,
                    )
                )
        sched.outputs["extract"] = n_extract
        sched.totals["extract"] = total_extract

        # represent (the first half of the extract stage): one store per model that a pair
        # job reads, computed when missing or corrupt (or --force extract)
        stored = {m.represent_key: m for p in self.pairs if p.layers or p.pooled_key
                  for m in (p.a, p.b)}  # fmt: skip
        needed_stores = {k for j in sched.extract for k in (j.store_a, j.store_b)}
        represent_models: list[ModelNode] = []
        for k, m in stored.items():
            if k not in needed_stores:
                continue
            if f <= 1 or not cache.has_arrays(
                "represent", k, verify, repair=verify, inputs=[m.key]
            ):
                represent_models.append(m)
                if f <= 1 and verify:
                    cache.discard("represent", k)
        opts = self.store_options
        sched.represent = [
            RepresentJob(
                root,
                m.represent_key,
                m.model_ref,
                self.probe,
                tuple(m.layers),
                opts,
                "auto",
                threads,
            )
            for m in represent_models
        ]
        sched.outputs["represent"] = len(sched.represent)
        sched.totals["represent"] = len(stored)

        # train
        needed_models = {m.ref for m in represent_models} | check_models
        specs = self.trained_specs()
        run_train: dict[str, bool] = {}
        for ref in needed_models:
            m = self.models[ref]
            if m.train_key is None:
                continue
            if f <= 0:
                run_train[m.train_key] = True
            elif not self._model_ok(m, verify):
                # missing: train (resuming after the last completed epoch if a resume state
                # exists); corrupt, or an epoch file missing from a finished run: retrain the
                # run from scratch (train() returns a finished run as it is)
                final = m.path.parent / MODEL_FILE
                restart = m.path.exists() or (m.path != final and is_complete(final))
                run_train[m.train_key] = run_train.get(m.train_key, False) or restart
        sched.train = [
            TrainJob(
                specs[k].model_dump(mode="json"),
                str(self.models_dir),
                force=forced,
                threads=threads,
                progress=True,
            )
            for k, forced in ((k, run_train[k]) for k in specs if k in run_train)
        ]
        sched.outputs["train"] = len(sched.train)
        sched.totals["train"] = len(specs)
        return sched

    # -- summaries ------------------------------------------------------------------------
    def describe(self, sched: Schedule) -> str:
        """The dry-run text: jobs per stage, what is cached, an estimate of the work."""
        lines = [
            f"suite {self.suite.name}: {len(self.models)} models, {len(self.pairs)} pairs, "
            f"{len(self.cells)} result rows",
            f"output {self.suite.output_dir}",
            f"cache  {self.cache.root}",
            "",
            f"{'stage':<8} {'outputs':>8} {'cached':>8} {'to run':>8} {'jobs':>6}  work",
        ]
        train_work = []
        for job in sched.train:
            spec = job.spec
            cfg = spec["train"]
            n = cfg.get("max_train_images")
            imgs = f"{n}" if n else f"|{spec['dataset']['name']} train|"
            train_work.append(f"{imgs}x{cfg['epochs']}")
        n_rep, images = len(sched.represent), self.probe.images
        work = {
            "train": (f"images x epochs: {' + '.join(train_work)}" if train_work else "-"),
            "represent": (
                f"probe forward passes ({self.probe.dtype}): {n_rep} models x "
                f"{images or 'all'} images" + (f" = {n_rep * images}" if images else "")
                if sched.represent
                else "-"
            ),
            "extract": (
                f"pair statistics from the model stores (no forward pass): "
                f"{len(sched.extract)} jobs"
                if sched.extract
                else "-"
            ),
            "align": f"{sched.outputs['align']} alignment fits" if sched.align else "-",
            "score": f"{sched.outputs['score']} cells" if sched.score else "-",
        }
        for stage in (STAGES[0], "represent", *STAGES[1:]):
            total, todo = sched.totals[stage], sched.outputs[stage]
            lines.append(
                f"{stage:<8} {total:>8} {total - todo:>8} {todo:>8} "
                f"{len(sched.jobs(stage)):>6}  {work[stage]}"
            )
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)


def _arch_ref(m: ModelNode) -> Any:
    return m.spec.architecture.model_dump(mode="json") if m.spec is not None else None


def _with_threads(job: ChecksJob, threads: int | None) -> ChecksJob:
    from dataclasses import replace

    return replace(job, threads=threads)


# ----------------------------------------------------------------------------- building


def _layer_names(
    spec: Any, num_classes: int, cache: Cache, persist: bool
) -> list[tuple[str, bool]]:
    """``(name, frozen)`` of an architecture's comparable layers: the model is built once
    on the CPU and the list cached (stage ``layers``), so warm runs do not import torch."""
    from simbench.train.checkpoint import create_plugin

    ref = spec.architecture.model_dump(mode="json")
    key = make_key(
        "layers", ref, num_classes, plugin_version("architecture", ref["name"]), _simbench_version()
    )
    rec = cache.get_json("layers", key, repair=persist)
    if rec is not None:
        return [(str(n), bool(f)) for n, f in rec["layers"]]
    arch = create_plugin("architecture", spec.architecture.name, spec.architecture.params)
    model = arch.build(num_classes, seed=0)
    out = [(s.name, s.frozen) for s in arch.layers(model)]
    if persist:
        cache.put_json("layers", key, {"layers": out, "architecture": ref})
    return out


def _sidecar(path: Path) -> dict[str, Any]:
    from simbench.train.checkpoint import sidecar_path

    try:
        return json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def build_plan(suite: Any, *, persist: bool = True) -> Plan:
    """The :class:`Plan` of a validated suite (builds each architecture once, on the CPU,
    to list its layers; loads no data and no weights). ``persist=False`` (dry runs)
    writes nothing, not even the cached layer lists."""
    from simbench.metrics.base import Consumes
    from simbench.registry import default_registry
    from simbench.suite import split_ref
    from simbench.train.checkpoint import epoch_file
    from simbench.train.config import ModelSpec

    reg = default_registry()
    cache = Cache(suite.cache_dir)
    warnings: list[str] = []
    version = _simbench_version()

    # -- models --
    layer_cache: dict[str, list[tuple[str, bool]]] = {}
    models: dict[str, ModelNode] = {}
    refs: list[str] = []
    for a, b in suite.expand_pairs():
        refs += [r for r in (a, b) if r not in refs]
    for ref in refs:
        _, epoch = split_ref(ref)
        ckpt = suite.checkpoint_path(ref)
        spec = suite.spec_of(ref)
        if ckpt is not None:
            side = _sidecar(ckpt)
            sha = side.get("sha256") or sha256_file(ckpt)
            # foreign weights (sidecar "source"): their preprocessing is not in the weights
            key = make_key(
                "checkpoint", sha, *([side["normalization"]] if "source" in side else [])
            )
            train_key, path = None, Path(ckpt)
            num_classes = int(side.get("num_classes", 10))
            epoch = side.get("epoch", epoch) if epoch is None else epoch
            if spec is None and side.get("spec"):
                spec = ModelSpec.model_validate(side["spec"])
        else:
            assert isinstance(spec, ModelSpec)
            train_key = spec.key()
            rdir = cache.root / "models" / train_key
            path = rdir / (epoch_file(epoch) if epoch is not None else "model.safetensors")
            key = make_key("model", train_key, "final" if epoch is None else ["epoch", epoch])
            side = _sidecar(path) if path.exists() else {}
            num_classes = int(side.get("num_classes", 10))
            if epoch is None:
                epoch = spec.train.epochs
        if spec is None:
            raise PlanError(
                f"model {ref!r}: its checkpoint sidecar {ckpt} records no ModelSpec, so its "
                "architecture (and its layers) cannot be rebuilt"
            )
        akey = json.dumps([spec.architecture.model_dump(mode="json"), num_classes], sort_keys=True)
        if akey not in layer_cache:
            layer_cache[akey] = _layer_names(spec, num_classes, cache, persist)
        all_layers = [n for n, frozen in layer_cache[akey] if not frozen]
        selected = suite.layer_filter(all_layers)
        models[ref] = ModelNode(ref, key, path, spec, train_key, epoch, selected, all_layers)

    # -- metrics and alignments --
    metrics: list[_MetricInfo] = []
    needs_fourth = needs_acts = needs_maps = False
    for r in _dedupe(suite.metric_refs()):
        rec, _ = reg.resolve("metric", r.name)
        # streaming is decided per instance (e.g. cka with kernel="rbf" does not stream)
        inst = reg.create("metric", r.name, **dict(r.params))
        m = _MetricInfo(r, rec.obj, inst, plugin_version("metric", r.name), suite.draws, version)
        if m.consumes is Consumes.REPRESENTATIONS:
            if m.input_ndim == 4:
                needs_maps = True
            elif inst.streaming:
                needs_fourth |= bool(getattr(inst, "streaming_fourth", False))
            else:
                needs_acts = True
        metrics.append(m)
    align_info = [(r, plugin_version("alignment", r.name)) for r in _dedupe(suite.alignment_refs())]

    p = suite.probe
    probe = ProbeConfig(
        p.dataset.name,
        dict(p.dataset.params),
        p.split,
        p.images,
        int(p.seed if p.seed is not None else suite.seed),
        p.positions,
        p.batch_size,
        p.blocks,
        p.null_pairings,
        p.dtype,
    )
    probe_dict = {
        "dataset": probe.dataset,
        "params": probe.params,
        "split": probe.split,
        "images": probe.images,
        "seed": probe.seed,
        "positions": probe.positions,
        "batch_size": probe.batch_size,
        "blocks": probe.blocks,
        "null_pairings": probe.null_pairings,
    }
    if probe.images is not None:  # the images drawn changed from uniform to per class
        probe_dict["sampling"] = PROBE_SAMPLING
    # the layers' input moments serve the alignments of weight metrics alone
    needs_inputs = any(m.consumes is not Consumes.REPRESENTATIONS for m in metrics)
    options = ExtractOptions(
        fourth=needs_fourth,
        activations=needs_acts,
        maps=needs_maps,
        forward=p.dtype,
        inputs=needs_inputs,
    )
    flat = suite.layer_features == "flat"
    store_options = StoreOptions(
        # pooled outputs always: the layer matrix reads them, and the ground-truth tests
        # (pc_deletion, layer_monotonicity; simbench.runner.model_data_job) too
        p.dtype, pooled=True, flat=suite.layer_matrix and flat, maps=needs_maps,
        inputs=needs_inputs,
    )  # fmt: skip
    for m in models.values():  # one store per model (its selected layers)
        m.represent_key = make_key(
            "represent", m.key, m.layers, probe_dict, store_options.key_dict(), version
        )

    # -- pairs, extract keys, cells --
    pairs: list[PairNode] = []
    cells: list[Cell] = []
    align_tasks: dict[str, list[AlignTask]] = {}
    for a_ref, b_ref in suite.expand_pairs():
        a, b = models[a_ref], models[b_ref]
        shared = [n for n in a.layers if n in set(b.layers)]
        if not shared:
            warnings.append(f"pair ({a_ref}, {b_ref}) shares no selected layer; it is skipped")
        extract = {
            n: make_key("extract", a.key, b.key, n, probe_dict, options.key_dict(), version)
            for n in shared
        }
        pooled_key = None
        if suite.layer_matrix and a.layers and b.layers and _matrix_pair(suite, a_ref, b_ref):
            pooled_key = make_key(
                "pooled", a.key, b.key, a.layers, b.layers, probe_dict, EXTRACT_POOLED, version,
                *(["maps"] if needs_maps else []),  # + conv maps on the matrix grid (DFT)
                *(["flat"] if suite.layer_features == "flat" else []),
                *([["forward", p.dtype]] if p.dtype != "float64" else []),
            )  # fmt: skip
        pair = PairNode(a, b, suite.relation(a_ref, b_ref), shared, extract, pooled_key)
        pairs.append(pair)
        for layer in shared:
            ekey = extract[layer]
            tasks = [
                AlignTask(
                    make_key("align", ekey, r.name, dict(r.params), v), r.name, dict(r.params)
                )
                for r, v in align_info
            ]
            if tasks:
                align_tasks[ekey] = tasks
            for m in metrics:
                for d, params in m.draw_params(suite.seed):
                    if m.consumes is Consumes.REPRESENTATIONS:
                        key = make_key("score", "rep", ekey, m.name, params, m.version, d)
                        cell = ScoreCell(key, "rep", m.name, params, ekey, None, None, layer, layer)
                        feats = "maps" if m.input_ndim == 4 else "positions"
                        cells.append(m.cell(pair, layer, layer, feats, None, d, cell))
                        continue
                    for (r, v), task in zip(align_info, tasks, strict=True):
                        key = make_key(
                            "score", "weights", ekey, task.key, m.name, params, m.version, d
                        )
                        shrink = params.get("shrinkage", m.cls.param_defaults().get("shrinkage"))
                        eig = make_key("eigvec", task.key, str(shrink)) if shrink else None
                        cell = ScoreCell(
                            key, "weights", m.name, params, ekey, task.key, eig, layer, layer,
                            align=(task.name, task.params),
                        )  # fmt: skip
                        align = (r.name, dict(r.params), v)
                        cells.append(m.cell(pair, layer, layer, None, align, d, cell))
        if pooled_key is None:
            continue
        for la in a.layers:
            for lb in b.layers:
                for m in metrics:
                    if m.consumes is not Consumes.REPRESENTATIONS or m.input_ndim not in (2, 4):
                        continue
                    for d, params in m.draw_params(suite.seed):
                        unc = [] if suite.layer_matrix_uncertainty else ["no-uncertainty"]
                        key = make_key(
                            "score",
                            "pooled",
                            pooled_key,
                            la,
                            lb,
                            m.name,
                            params,
                            m.version,
                            d,
                            *unc,
                        )
                        cell = ScoreCell(
                            key,
                            "pooled",
                            m.name,
                            params,
                            pooled_key,
                            None,
                            None,
                            la,
                            lb,
                            uncertainty=suite.layer_matrix_uncertainty,
                        )
                        feats = MATRIX_FEATURES[suite.layer_features]  # 4-D: common grid
                        cells.append(m.cell(pair, la, lb, feats, None, d, cell))

    checks = _checks_job(suite, cache, pairs, probe, probe_dict, metrics, align_info)
    return Plan(
        suite, cache, models, pairs, cells, probe, options, align_tasks, checks, warnings,
        store_options,
    )  # fmt: skip


def _matrix_pair(suite: Any, a_ref: str, b_ref: str) -> bool:
    """Whether a pair gets the layer matrix (``layer_matrix_models`` globs, both models)."""
    from fnmatch import fnmatchcase

    globs = suite.layer_matrix_models
    if globs is None:
        return True
    return all(any(fnmatchcase(ref, g) for g in globs) for ref in (a_ref, b_ref))


#: bump when the pooled-outputs file changes
EXTRACT_POOLED = 1
#: the results' ``features`` of layer-matrix rows per suite ``layer_features``
MATRIX_FEATURES = {"pooled": "pooled", "flat": "flattened"}
#: how a probe of ``images`` images is drawn (part of the probe's keys when ``images`` is set):
#: per class, :func:`simbench.data.sampling.balanced_indices` (was: uniform without replacement)
PROBE_SAMPLING = "per_class_v1"


class _MetricInfo:
    """A suite metric: its reference, class, an instance, version, draws and row fields."""

    def __init__(self, ref: Any, cls: type, inst: Any, ver: dict, draws: int, simbench: str):
        self.ref, self.cls, self.inst, self.version = ref, cls, inst, ver
        self.name = ref.name
        self.params = dict(ref.params)
        self.label = label_of(ref.name, self.params)
        self.consumes = cls.consumes
        self.input_ndim = int(getattr(inst, "input_ndim", 2))
        self.stochastic = "seed" in cls.param_defaults()
        self.draws = draws if self.stochastic else 1
        self.packages = {"simbench": simbench, ver["package"]: ver["version"]}

    def draw_params(self, suite_seed: int) -> list[tuple[int, dict[str, Any]]]:
        """``(draw, params)``: a stochastic metric's seed is (its seed, default the suite's)
        plus the draw."""
        out = []
        for d in range(self.draws):
            params = dict(self.params)
            if self.stochastic:
                params["seed"] = int(self.params.get("seed", suite_seed)) + d
            out.append((d, params))
        return out

    def cell(
        self,
        pair: PairNode,
        layer_a: str,
        layer_b: str,
        features: str | None,
        align: tuple[str, dict[str, Any], dict[str, str]] | None,
        draw: int,
        score: ScoreCell,
    ) -> Cell:
        """The results row of one score cell; ``align``: (name, params, version) of a
        weight row's alignment, None for representation rows."""
        from simbench.runner.results import params_json

        packages = dict(self.packages)
        if align is not None:
            packages[align[2]["package"]] = align[2]["version"]
        return Cell(
            pair=pair,
            layer_a=layer_a,
            layer_b=layer_b,
            alignment=align[0] if align else None,
            alignment_params=params_json(align[1]) if align else None,
            metric=self.name,
            metric_params=params_json(self.params),
            features=features,
            depth_a=pair.a.all_layers.index(layer_a),
            depth_b=pair.b.all_layers.index(layer_b),
            draw=draw,
            consumes=self.consumes.value,
            higher_is_better=bool(self.cls.higher_is_better),
            packages=packages,
            score=score,
        )


def _dedupe(refs: Sequence[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for r in refs:
        label = label_of(r.name, dict(r.params))
        if label not in seen:
            seen.add(label)
            out.append(r)
    return out


def _checks_job(
    suite: Any,
    cache: Cache,
    pairs: list[PairNode],
    probe: ProbeConfig,
    probe_dict: dict[str, Any],
    metrics: list[_MetricInfo],
    align_info: list[tuple[Any, dict[str, str]]],
) -> ChecksJob | None:
    """Invariance checks on the suite's own activations: the first ``seed`` pair (else the
    first pair), its middle layer; weights aligned with the first alignment that is not
    ``identity`` (else ``identity``)."""
    usable = [p for p in pairs if p.layers]
    if not usable or not metrics:
        return None
    pair = next((p for p in usable if p.relation == "seed"), usable[0])
    layer = pair.layers[len(pair.layers) // 2]
    specs = tuple((m.label, m.name, m.params) for m in metrics)
    versions = [m.version for m in metrics]
    alignment = None
    if align_info:
        ar, av = next(((r, v) for r, v in align_info if r.name != "identity"), align_info[0])
        alignment = (ar.name, dict(ar.params))
        versions.append(av)
    images = min(64, probe.images or 64)
    maps = any(m.input_ndim == 4 for m in metrics)
    key = make_key(
        "checks", pair.a.key, pair.b.key, layer, probe_dict, specs, alignment, versions,
        suite.seed, images, maps, _simbench_version(),
    )  # fmt: skip
    return ChecksJob(
        str(cache.root),
        key,
        pair.a.model_ref,
        pair.b.model_ref,
        probe,
        layer,
        specs,
        alignment,
        suite.seed,
        images,
        maps,
        extra={"model_a": pair.a.ref, "model_b": pair.b.ref},
    )
