"""The suite format (simbench.suite): validation messages with lines and key paths, pair
expansion, layer filters, relations, paths, config hash, and the ``simbench run`` exit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simbench.errors import SimbenchError
from simbench.suite import Suite, SuiteError, load_suite, parse_suite, split_ref
from simbench.train.config import ModelSpec, PluginRef, TrainConfig

HERE = Path(__file__).parent
SUITES = HERE / "suites"
QUICKSTART = HERE.parent / "examples" / "quickstart.yaml"
BAD = sorted(SUITES.glob("bad_*.yaml"))
EXPECT = re.compile(r"^# (?P<what>.+); expect: (?P<line>\d+) (?P<path>\S+) \| (?P<text>.+)$")


def expectation(path: Path) -> tuple[int, str, str]:
    """(line, key path, message substring) from the file's first-line comment."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    m = EXPECT.match(first)
    assert m, f"{path.name}: first line must be '# WHAT; expect: LINE PATH | TEXT'"
    return int(m["line"]), "" if m["path"] == "-" else m["path"], m["text"]


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- bad suites


def test_there_are_at_least_30_malformed_suites():
    assert len(BAD) >= 30
    kinds = {p.name.split("_")[1] for p in BAD}
    assert {"yaml", "key", "plugin", "param", "train", "model", "pair", "layers"} <= kinds


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_malformed_suite_names_line_and_key(path: Path):
    line, key, text = expectation(path)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, SimbenchError)
    hits = [p for p in err.problems if p.line == line and p.path == key]
    assert hits, f"no problem at line {line}, key {key!r}:\n{err}"
    assert any(text in p.message for p in hits), f"{text!r} not in:\n{err}"
    # the message: one "FILE:LINE: key.path: problem" line per problem, sorted by line
    lines = str(err).splitlines()
    assert len(lines) == len(err.problems)
    prefix = f"{path}:{line}: " + (f"{key}: " if key else "")
    assert any(s.startswith(prefix) and text in s for s in lines)
    numbers = [int(re.match(rf"{re.escape(str(path))}:(\d+): ", s)[1]) for s in lines]
    assert numbers == sorted(numbers)


def test_unknown_plugin_suggests_the_closest_name():
    with pytest.raises(SuiteError) as info:
        load_suite(SUITES / "bad_plugin_architecture.yaml")
    (problem,) = info.value.problems
    assert problem.message.startswith("unknown architecture 'vggg'. Did you mean 'vgg'?")


def test_every_problem_is_reported_at_once(tmp_path):
    text = """\
name: many
modles: 1
models:
  - id: a
    architecture: vggg
    dataset: embedded
    seeds: [0, 1]
    train: {epochs: 0}
metrics: [cka, {name: cka, params: {kernel: cubic}}]
probe: {images: 0}
pairs:
  - [a@0, a@9]
"""
    with pytest.raises(SuiteError) as info:
        load_suite(write(tmp_path, text))
    got = [(p.line, p.path) for p in info.value.problems]
    # a model with a problem stops the pair checks (a@9 needs the models): 5 problems
    assert got == [
        (2, "modles"),
        (5, "models.0.architecture"),
        (8, "models.0.train.epochs"),
        (9, "metrics.1.params.kernel"),
        (10, "probe.images"),
    ]


def test_missing_key_left_out_when_a_misspelt_key_suggests_it(tmp_path):
    text = "name: t\nmodels:\n  - id: a\n    architecture: {nam: vgg}\n    dataset: embedded\n"
    text += "metrics: [cka]\n"
    with pytest.raises(SuiteError) as info:
        load_suite(write(tmp_path, text))
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path / 'suite.yaml'}:4: models.0.architecture.nam: unknown key 'nam'; "
        "did you mean 'name'?"
    ]


def test_unreadable_suite_file(tmp_path):
    with pytest.raises(SuiteError, match="cannot read the suite"):
        load_suite(tmp_path / "absent.yaml")


# ----------------------------------------------------------------------------- quickstart


def test_quickstart_is_valid_and_as_documented():
    s = load_suite(QUICKSTART)
    assert s.name == "quickstart"
    assert s.model_ids() == ["vgg@0", "vgg@1", "c5@2", "random@3"]
    assert s.expand_pairs() == [("vgg@0", "vgg@1"), ("vgg@0", "c5@2"), ("vgg@0", "random@3")]
    assert [s.relation(a, b) for a, b in s.expand_pairs()] == ["seed", "dataset", "labels"]
    specs = s.model_specs()
    arch = PluginRef(name="vgg", params={"depth": 11, "width": 0.25})
    base = TrainConfig(epochs=3, max_train_images=2000, lr=0.02, batch_size=64)
    assert specs["vgg@1"] == ModelSpec(
        architecture=arch,
        dataset=PluginRef(name="embedded"),
        seed=1,
        train=base.model_copy(update={"save_epochs": (1,)}),
    )
    assert specs["random@3"] == ModelSpec(
        architecture=arch,
        dataset=PluginRef(name="random_labels", params={"base": "embedded", "seed": 1}),
        seed=3,
        train=base,
    )
    assert s.output_dir == QUICKSTART.parent.resolve() / "runs" / "quickstart"
    assert s.cache_dir == s.output_dir / "cache"
    assert (s.probe.images, s.probe.split, s.probe.seed) == (300, "test", 0)
    assert [r.name for r in s.alignment_refs()] == ["identity", "procrustes"]
    assert [r.name for r in s.metric_refs()] == [
        "cka",
        "svcca",
        "procrustes_distance",
        "bures_cosine",
        "effective_rank",
        "bures",
    ]
    assert s.metric_refs()[-1].params == {"draws": 8}
    assert s.executor_ref() == PluginRef(name="local")
    assert s.layer_filter(["conv1", "fc"]) == ["conv1"]  # conv*: fc has no learned component
    assert s.relation_labels("random@3") == {"note": "labels drawn with seed 1"}


def test_quickstart_comments_every_key():
    for i, line in enumerate(QUICKSTART.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"quickstart.yaml:{i} has no comment: {line!r}"


# ----------------------------------------------------------------------------- pairs

PAIRS = """\
name: pairs
training: {epochs: 2}
models:
  - id: a
    architecture: vgg
    dataset: embedded
    seeds: [0, 1, 2]
    train: {save_epochs: [2, 0]}
  - id: b
    architecture: factorized_vgg
    dataset: embedded
    seeds: [0, 1]
  - id: c
    architecture: vgg
    dataset: {name: class_subset, params: {base: embedded, first: 5}}
    seed: 7
metrics: [cka]
"""


def pairs_of(tmp_path: Path, pairs: str) -> list[tuple[str, str]]:
    return load_suite(write(tmp_path, PAIRS + "pairs:\n" + pairs)).expand_pairs()


def test_pairs_explicit_same_checkpoints_deduplicated_in_order(tmp_path):
    got = pairs_of(
        tmp_path,
        """\
  - [c, a@1]
  - {same: [architecture, dataset]}
  - {checkpoints: a@1}
  - [a@1, c@7]
  - [a@0:e2, a@1:e2]
  - [a@2, a@0]
""",
    )
    assert got == [
        ("c@7", "a@1"),
        ("a@0", "a@1"),
        ("a@0", "a@2"),
        ("a@1", "a@2"),
        ("b@0", "b@1"),
        ("a@1:e0", "a@1"),
        ("a@1:e2", "a@1"),
        ("a@0:e2", "a@1:e2"),
    ]


def test_pairs_all_and_default(tmp_path):
    ids = ["a@0", "a@1", "a@2", "b@0", "b@1", "c@7"]
    expected = [(x, y) for i, x in enumerate(ids) for y in ids[i + 1 :]]
    assert pairs_of(tmp_path, "  - {all: true}\n") == expected
    assert load_suite(write(tmp_path, PAIRS, "default.yaml")).expand_pairs() == expected
    assert len(expected) == 15


def test_pairs_checkpoints_of_every_seed_of_a_bare_id(tmp_path):
    assert pairs_of(tmp_path, "  - {checkpoints: a}\n") == [
        (f"a@{s}:e{e}", f"a@{s}") for s in (0, 1, 2) for e in (0, 2)
    ]


def test_pairs_same_fields(tmp_path):
    assert pairs_of(tmp_path, "  - {same: [id]}\n") == [
        ("a@0", "a@1"),
        ("a@0", "a@2"),
        ("a@1", "a@2"),
        ("b@0", "b@1"),
    ]
    # equal seeds across entries
    assert pairs_of(tmp_path, "  - {same: [seed]}\n") == [("a@0", "b@0"), ("a@1", "b@1")]
    # same architecture: a's seeds with each other and c (vgg), b's seeds (factorized_vgg)
    assert pairs_of(tmp_path, "  - {same: [architecture]}\n") == [
        ("a@0", "a@1"),
        ("a@0", "a@2"),
        ("a@0", "c@7"),
        ("a@1", "a@2"),
        ("a@1", "c@7"),
        ("a@2", "c@7"),
        ("b@0", "b@1"),
    ]
    # data and labels: c (5 classes) is split off
    assert ("a@0", "c@7") not in pairs_of(tmp_path, "  - {same: [architecture, data, labels]}\n")
    # `train` ignores save_epochs: a (save_epochs [0, 2]) and b, c (none) train alike
    assert len(pairs_of(tmp_path, "  - {same: [train]}\n")) == 15


# ----------------------------------------------------------------------------- layers


@pytest.mark.parametrize(
    ("layers", "expected", "unmatched"),
    [
        ("all", ["conv1", "conv2", "conv10", "fc"], []),
        ("conv?", ["conv1", "conv2"], []),
        ("'conv*'", ["conv1", "conv2", "conv10"], []),
        ("[fc, 'conv[12]']", ["conv1", "conv2", "fc"], []),
        ("[fc, conv1, pool*]", ["conv1", "fc"], ["pool*"]),
        ("[Conv1]", [], ["Conv1"]),
    ],
)
def test_layer_filter(tmp_path, layers, expected, unmatched):
    # on made-up layer names: the suite's own models (VGGs) have no conv10 (and a pattern
    # matching none of their layers is a load error, test_unknown_layers_are_load_errors)
    s = load_suite(write(tmp_path, PAIRS + "layers: all\n"))
    s = s.model_copy(update={"layers": yaml.safe_load(f"layers: {layers}")["layers"]})
    names = ["conv1", "conv2", "conv10", "fc"]
    assert s.layer_filter(names) == expected
    assert s.unmatched_layer_patterns(names) == unmatched


# ----------------------------------------------------------------------------- relations

RELATIONS = """\
name: rel
training: {epochs: 1}
models:
  - {id: t, architecture: vgg, dataset: embedded, seeds: [0, 1], train: {save_epochs: [0]}}
  - id: r
    architecture: vgg
    dataset: {name: random_labels, params: {base: embedded, seed: 1}}
    seeds: [0, 1]
  - id: r2
    architecture: vgg
    dataset: {name: random_labels, params: {base: embedded, seed: 2}}
  - id: c5
    architecture: vgg
    dataset: {name: class_subset, params: {base: embedded, first: 5}}
  - id: c5r
    architecture: vgg
    dataset:
      name: random_labels
      params: {base: {name: class_subset, params: {base: embedded, first: 5}}, seed: 1}
  - {id: f, architecture: factorized_vgg, dataset: embedded}
  - {id: lr, architecture: vgg, dataset: embedded, train: {lr: 0.1}}
  - id: rlong
    architecture: vgg
    dataset: {name: random_labels, params: {base: embedded, seed: 2}}
    train: {epochs: 4}
  - id: zero
    architecture: vgg
    dataset: {name: random_labels, params: {base: embedded, seed: 4, fraction: 0.0}}
    seed: 5
  - id: n1
    architecture: vgg
    dataset: {name: npz, params: {path: true.npz}}
    relation: {data: cifar-sub}
  - id: n2
    architecture: vgg
    dataset: {name: npz, params: {path: shuffled1.npz}}
    relation: {data: cifar-sub, task: random_labels, labels_seed: 1}
    seeds: [0, 1]
  - id: n3
    architecture: vgg
    dataset: {name: npz, params: {path: shuffled2.npz}}
    relation: {data: cifar-sub, task: random_labels, labels_seed: 2}
  - id: n4
    architecture: vgg
    dataset: {name: npz, params: {path: other.npz}}
metrics: [cka]
"""


@pytest.mark.parametrize(
    ("a", "b", "relation"),
    [
        ("t@0", "t@1", "seed"),
        ("t@1", "t@0", "seed"),
        ("t@0:e0", "t@0", "checkpoint"),
        ("t@0:e0", "t@1:e0", "seed"),
        ("t@0:e0", "t@1", "other"),  # different models at different epochs
        ("t@0", "r@0", "labels"),
        ("r@0", "r@1", "seed"),  # one random-label realisation, two seeds
        ("r@0", "r2@0", "random_labels"),
        ("t@0", "c5@0", "dataset"),
        ("r@0", "c5r@0", "dataset"),  # both random labels, different data
        ("t@0", "c5r@0", "other"),  # different data and labels
        ("t@0", "f@0", "other"),  # different architectures
        ("t@0", "lr@0", "other"),  # different training
        ("t@0", "rlong@0", "labels"),  # random labels may train longer (GM B.3)
        ("r2@0", "rlong@0", "other"),  # the same realisation, trained differently
        ("r@0", "rlong@0", "other"),
        ("t@0", "zero@5", "seed"),  # fraction 0: true labels
        ("n1@0", "n2@0", "labels"),  # relation labels override: same data
        ("n2@0", "n3@0", "random_labels"),
        ("n2@0", "n2@1", "seed"),
        ("n1@0", "n4@0", "dataset"),  # no override: different npz files
        ("n1@0", "t@1", "dataset"),
    ],
)
def test_relation(tmp_path, a, b, relation):
    s = load_suite(write(tmp_path, relations_with_files(tmp_path)))
    assert s.relation(a, b) == relation


def test_relation_of_a_model_with_itself_is_an_error(tmp_path):
    s = load_suite(write(tmp_path, relations_with_files(tmp_path)))
    with pytest.raises(ValueError, match="same model"):
        s.relation("t@0", "t@0")
    with pytest.raises(KeyError, match="no model 't@9' in suite 'rel'; did you mean 't@"):
        s.relation("t@0", "t@9")


def relations_with_files(tmp_path: Path) -> str:
    """RELATIONS with its npz archives present (a missing dataset file is a load error);
    the archives are only checked for existence at load time."""
    text = RELATIONS
    for name in ("true", "shuffled1", "shuffled2", "other"):
        (tmp_path / f"{name}.npz").write_bytes(b"")
        text = text.replace(f"path: {name}.npz", f"path: {tmp_path / name}.npz")
    return text


# ----------------------------------------------------------------------------- specs, paths


def test_model_specs_merge_training_overrides(tmp_path):
    text = """\
name: specs
training: {epochs: 2, lr: 0.1, augment: false}
models:
  - id: a
    architecture: {name: vgg, params: {width: 0.5}}
    dataset: embedded
    train: {lr: 0.2}
  - {id: b, architecture: vgg, dataset: embedded, seed: 4}
metrics: [cka]
"""
    specs = load_suite(write(tmp_path, text)).model_specs()
    assert list(specs) == ["a@0", "b@4"]
    assert specs["a@0"].train == TrainConfig(epochs=2, lr=0.2, augment=False)
    assert specs["b@4"].train == TrainConfig(epochs=2, lr=0.1, augment=False)
    assert specs["a@0"].architecture == PluginRef(name="vgg", params={"width": 0.5})
    assert specs["b@4"].seed == 4


def test_relative_paths_resolve_against_the_suite_folder(tmp_path, monkeypatch):
    path = write(tmp_path, PAIRS + "output: out/x\ncache: ../shared-cache\n", "sub/s.yaml")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    s = load_suite(Path("..") / "sub" / "s.yaml")
    assert s.output_dir == (tmp_path / "sub" / "out" / "x").resolve()
    assert s.cache_dir == (tmp_path / "shared-cache").resolve()
    s2 = load_suite(write(tmp_path, PAIRS + f"output: {tmp_path / 'abs'}\n", "sub/t.yaml"))
    assert s2.output_dir == tmp_path / "abs"
    assert s2.cache_dir == tmp_path / "abs" / "cache"
    s3 = load_suite(path.parent / "t.yaml")
    assert s3.file == str(path.parent / "t.yaml")


def fake_checkpoint(folder: Path, spec: ModelSpec | None, epochs: tuple[int, ...] = ()) -> Path:
    """A run folder holding model.safetensors + sidecar (and epoch_N files): the suite
    only reads the sidecar's spec and checks that the files exist."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"spec": spec.model_dump(mode="json")} if spec is not None else {"x": 1}
    for stem in ["model", *(f"epoch_{e}" for e in epochs)]:
        (folder / f"{stem}.safetensors").write_bytes(b"weights")
        (folder / f"{stem}.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder / "model.safetensors"


def test_checkpoint_models(tmp_path):
    spec = ModelSpec(
        architecture=PluginRef(name="vgg"),
        dataset=PluginRef(name="embedded"),
        seed=9,
        train=TrainConfig(epochs=2, save_epochs=(1, 2)),
    )
    weights = fake_checkpoint(tmp_path / "ckpt" / "run", spec, epochs=(1,))  # epoch_2 absent
    fake_checkpoint(tmp_path / "ckpt" / "nospec", None)
    text = """\
name: ck
models:
  - {id: ext, checkpoint: ckpt/run}
  - {id: raw, checkpoint: ckpt/nospec/model.json}
  - {id: a, architecture: vgg, dataset: embedded, train: {epochs: 2, save_epochs: [1, 2]}}
pairs:
  - [ext, a]
  - {checkpoints: ext}
  - [raw, ext]
metrics: [cka]
"""
    s = load_suite(write(tmp_path, text))
    specs = s.model_specs()
    assert specs == {
        "ext": weights,
        "raw": tmp_path / "ckpt" / "nospec" / "model.safetensors",
        "a@0": spec.model_copy(update={"seed": 0}),
    }
    assert s.expand_pairs() == [("ext", "a@0"), ("ext:e1", "ext"), ("raw", "ext")]
    assert s.spec_of("ext") == spec and s.spec_of("raw") is None
    assert s.checkpoint_path("ext:e1") == weights.parent / "epoch_1.safetensors"
    assert s.checkpoint_path("ext") == weights and s.checkpoint_path("a@0") is None
    assert s.relation("ext", "a@0") == "seed"
    assert s.relation("ext:e1", "ext") == "checkpoint"
    assert s.relation("raw", "ext") == "other"  # its sidecar records no spec
    assert s.models[0].checkpoint == str(weights)  # normalised: absolute weights file


def test_checkpoint_without_sidecar_or_saved_epoch(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"weights")
    text = "name: ck\nmodels:\n  - {id: ext, checkpoint: w.safetensors}\nmetrics: [cka]\n"
    with pytest.raises(SuiteError, match=r"suite.yaml:3: models.0.checkpoint: .* no sidecar"):
        load_suite(write(tmp_path, text))
    spec = ModelSpec(architecture=PluginRef(name="vgg"), dataset=PluginRef(name="embedded"))
    fake_checkpoint(tmp_path / "run", spec)
    text = "name: ck\nmodels:\n  - {id: ext, checkpoint: run}\n  - {id: b, checkpoint: run}\n"
    text += "pairs: [[ext, 'ext@0']]\nmetrics: [cka]\n"
    with pytest.raises(SuiteError, match=r":5: pairs.0.1: 'ext' is a checkpoint model"):
        load_suite(write(tmp_path, text))


# ----------------------------------------------------------------------------- config hash

HASHED = """\
name: h
models:
  - id: a
    architecture: {name: vgg, params: {width: 0.25, depth: 11}}
    dataset: embedded
    seeds: [0, 1]
metrics: [cka, {name: svcca, params: {threshold: 0.99, rule: sum}}]
"""
REORDERED = """\
metrics:
  - cka
  - name: svcca
    params:
      rule: sum
      threshold: 0.99
models:
  - seeds: [0, 1]
    dataset: {name: embedded, params: {}}
    architecture: {params: {depth: 11, width: 0.25}, name: vgg}
    id: a
name: h
probe: {split: test, images: 500}
layers: all
draws: 1
output: elsewhere
executor: {name: local, params: {workers: 1}}
"""


def test_config_hash_is_stable_under_reordering_and_defaults(tmp_path):
    h = load_suite(write(tmp_path, HASHED, "a.yaml")).config_hash()
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    assert load_suite(write(tmp_path, REORDERED, "b.yaml")).config_hash() == h


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("threshold: 0.99", "threshold: 0.9"),
        ("width: 0.25", "width: 0.5"),
        ("seeds: [0, 1]", "seeds: [0, 2]"),
        ("metrics: [cka,", "metrics: [rsa,"),
        ("name: h", "name: h2"),
    ],
)
def test_config_hash_changes_with_the_config(tmp_path, old, new):
    h = load_suite(write(tmp_path, HASHED, "a.yaml")).config_hash()
    assert old in HASHED
    changed = load_suite(write(tmp_path, HASHED.replace(old, new), "b.yaml")).config_hash()
    assert changed != h
    with_probe = load_suite(write(tmp_path, HASHED + "probe: {images: 100}\n", "c.yaml"))
    assert with_probe.config_hash() != h


# ----------------------------------------------------------------------------- small API


def test_split_ref():
    assert split_ref("a@0") == ("a@0", None)
    assert split_ref("a.b-c_d@12:e3") == ("a.b-c_d@12", 3)
    assert split_ref("ext:e0") == ("ext", 0)
    with pytest.raises(ValueError, match="not a model reference"):
        split_ref("a@x")


def test_parse_suite_from_text_names_the_string():
    s = parse_suite(PAIRS)
    assert isinstance(s, Suite) and s.file == "<string>"
    with pytest.raises(SuiteError) as info:
        parse_suite("name: t\nmodels: 3\nmetrics: [cka]\n", file="inline")
    assert str(info.value) == "inline:2: models: Input should be a valid list (got 3)"


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("path", BAD[::6], ids=[p.stem for p in BAD[::6]])
def test_simbench_run_prints_the_problems_and_exits_2(path, capsys):
    from simbench.cli import main

    line, key, text = expectation(path)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}: " + (f"{key}: " if key else "") in err
    assert text in err and "Traceback" not in err


def test_simbench_run_process_exit_code(tmp_path):
    path = SUITES / "bad_pair_unknown_model.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "simbench.cli", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"{path}:10: pairs.0.1: unknown model 'b@1'; did you mean 'a@1'? Models: a@0, a@1"
    )
