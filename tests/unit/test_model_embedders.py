"""The model-backed embedders (onnx-minilm, st:<model>), their deploy-time fetch and the plugin.

Nothing here touches the network. The ONNX embedder runs end to end on a tiny real model: a
WordPiece ``tokenizer.json`` built with the tokenizers library and a ``model.onnx`` (token
and position embeddings mixed element-wise) written as raw ONNX protobuf,
executed by the real onnxruntime. Fetches read archives from ``file://`` URLs or a local HTTP
server on 127.0.0.1. sentence-transformers is not installed here: its absence is real, and its
presence is a stand-in module put in ``sys.modules``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.util
import inspect
import io
import math
import socket
import string
import sys
import tarfile
import threading
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from avatarstack.adapters.embedders import onnx_minilm
from avatarstack.adapters.embedders import sentence_transformers as st
from avatarstack.adapters.embedders.onnx_minilm import OnnxMiniLMEmbedder, fetch_model
from avatarstack.adapters.embedders.sentence_transformers import SentenceTransformersEmbedder
from avatarstack.bootstrap.settings import Settings
from avatarstack.bootstrap.wiring.knowledge import pick_embedder
from avatarstack.plugins.builtin import model_embedders
from avatarstack.plugins.manager import PluginError, collect, make_plugin_manager, settings_view
from avatarstack.ports.embeddings import Embedder
from avatarstack.ports.errors import UnavailableError, UpstreamError

# =========================================================================== a tiny real model

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = """
    the a of to and in is how do i my your reset password account forgot login email refund office
    open dark mode app invoice shipping price document number about topic quick brown fox jumps
    over lazy dog chunk text
""".split()  # noqa: SIM905 (a word list reads better as text)


def tiny_vocabulary() -> dict[str, int]:
    characters = list(string.ascii_lowercase + string.digits)
    tokens = [
        *SPECIAL_TOKENS,
        *characters,
        *(f"##{c}" for c in characters),
        *string.punctuation,
        "—",
        "…",
        *WORDS,
    ]
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return _varint(field << 3 | 2) + _varint(len(raw)) + raw


ONNX_FLOAT, ONNX_INT64 = 1, 7


def _tensor(name: str, array: np.ndarray) -> bytes:  # TensorProto: dims, data_type, name, raw
    element_type, little_endian = (
        (ONNX_INT64, "<i8") if array.dtype == np.int64 else (ONNX_FLOAT, "<f4")
    )
    dims = b"".join(_int(1, d) for d in array.shape)
    raw = array.astype(little_endian).tobytes()
    return dims + _int(2, element_type) + _bytes(8, name) + _bytes(9, raw)


def _value_info(name: str, element_type: int, dims: Sequence[int | str]) -> bytes:
    shape = b"".join(
        _bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims
    )  # TensorShapeProto.Dimension: dim_value = 1, dim_param = 2
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, element_type) + _bytes(2, shape)))


def _node(op_type: str, inputs: Sequence[str], outputs: Sequence[str]) -> bytes:
    return (
        b"".join(_bytes(1, i) for i in inputs)
        + b"".join(_bytes(2, o) for o in outputs)
        + _bytes(4, op_type)
    )


def tiny_onnx_model(vocabulary_size: int, dimensions: int, *, seed: int = 7) -> bytes:
    """A BERT-shaped ModelProto (inputs input_ids, attention_mask, token_type_ids; output
    last_hidden_state) whose token state is ``word + word * position`` from random tables, so
    the pooled vector depends on the tokens and on their order."""
    rng = np.random.default_rng(seed)
    words = rng.standard_normal((vocabulary_size, dimensions)).astype(np.float32)
    positions = (0.5 * rng.standard_normal((512, dimensions))).astype(np.float32)
    token_types = np.zeros((2, dimensions), dtype=np.float32)
    token_dims: list[int | str] = ["batch", "sequence"]
    nodes = [
        _node("Shape", ["input_ids"], ["shape"]),
        _node("Gather", ["shape", "one"], ["length"]),
        _node("Range", ["zero", "length", "one"], ["position_ids"]),
        _node("Gather", ["position_table", "position_ids"], ["positions"]),
        _node("Gather", ["word_table", "input_ids"], ["words"]),
        _node("Gather", ["type_table", "token_type_ids"], ["types"]),
        _node("Mul", ["words", "positions"], ["mixed"]),
        _node("Add", ["words", "mixed"], ["ordered"]),
        _node("Add", ["ordered", "types"], ["last_hidden_state"]),
    ]
    initializers = [
        _tensor("word_table", words),
        _tensor("position_table", positions),
        _tensor("type_table", token_types),
        _tensor("zero", np.array(0, dtype=np.int64)),
        _tensor("one", np.array(1, dtype=np.int64)),
    ]
    graph = (
        b"".join(_bytes(1, node) for node in nodes)
        + _bytes(2, "tiny-bert")
        + b"".join(_bytes(5, tensor) for tensor in initializers)
        + _bytes(11, _value_info("input_ids", ONNX_INT64, token_dims))
        + _bytes(11, _value_info("attention_mask", ONNX_INT64, token_dims))
        + _bytes(11, _value_info("token_type_ids", ONNX_INT64, token_dims))
        + _bytes(12, _value_info("last_hidden_state", ONNX_FLOAT, [*token_dims, dimensions]))
    )
    # ModelProto: ir_version = 1, graph = 7, opset_import = 8 (domain "", version 13)
    return _int(1, 8) + _bytes(7, graph) + _bytes(8, _bytes(1, "") + _int(2, 13))


def write_tiny_model(folder: Path, dimensions: int = onnx_minilm.DIMENSIONS) -> Path:
    vocabulary = tiny_vocabulary()
    tokenizer = Tokenizer(models.WordPiece(vocabulary, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocabulary["[CLS]"]), ("[SEP]", vocabulary["[SEP]"])],
    )
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / onnx_minilm.TOKENIZER_FILE))
    (folder / onnx_minilm.MODEL_FILE).write_bytes(tiny_onnx_model(len(vocabulary), dimensions))
    (folder / "config.json").write_text('{"model_type": "tiny-bert"}\n')
    return folder


def make_archive(path: Path, files: Mapping[str, bytes]) -> tuple[Path, str]:
    """A gzipped tar of ``files`` (name → content) and its SHA-256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def tiny_archive(tiny_model: Path, tmp_path: Path) -> tuple[Path, str]:
    """Laid out like Chroma's onnx.tar.gz: an ``onnx/`` folder with the model files."""
    files = {f"onnx/{p.name}": p.read_bytes() for p in sorted(tiny_model.iterdir())}
    return make_archive(tmp_path / "onnx.tar.gz", files)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any outgoing connection fails the test."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"network access to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# =========================================================================== onnx-minilm: embed


async def test_a_missing_model_is_unavailable_with_the_fetch_hint(tmp_path: Path) -> None:
    embedder = OnnxMiniLMEmbedder(tmp_path / "models" / "onnx-minilm")
    assert (embedder.name, embedder.dimensions) == ("onnx-minilm", 384)
    with pytest.raises(UnavailableError) as caught:
        await embedder.embed(["hello"])
    assert str(tmp_path / "models" / "onnx-minilm") in caught.value.detail
    assert "run `avatarstack fetch-model onnx-minilm` at deploy time" in caught.value.detail
    with pytest.raises(UnavailableError, match="fetch-model onnx-minilm"):
        await embedder.ping()
    assert not (tmp_path / "models").exists()  # looking did not create anything


async def test_a_folder_without_the_tokenizer_is_a_missing_model(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(UnavailableError, match="not in"):
        await OnnxMiniLMEmbedder(tmp_path).embed(["hello"])


async def test_the_tiny_model_embeds_unit_vectors_in_order(tiny_model: Path) -> None:
    embedder = OnnxMiniLMEmbedder(tiny_model)
    texts = ["reset my password", "Reset my PASSWORD", "the lazy dog", "", "fox " * 400]
    vectors = await embedder.embed(texts)
    assert len(vectors) == len(texts)
    for vector in vectors:
        assert len(vector) == 384
        assert all(isinstance(v, float) for v in vector)
        assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-9)
    assert vectors[0] == pytest.approx(vectors[1])  # the tokenizer lower-cases
    assert vectors[0] != pytest.approx(vectors[2])
    assert await embedder.embed([]) == []
    await embedder.ping()


async def test_batch_size_and_batch_neighbours_do_not_change_a_vector(tiny_model: Path) -> None:
    texts = [f"document number {i} about topic {i % 7}" + " chunk" * (i % 13) for i in range(70)]
    whole = await OnnxMiniLMEmbedder(tiny_model, batch_size=32).embed(texts)
    assert await OnnxMiniLMEmbedder(tiny_model, batch_size=3).embed(texts) == whole
    single = OnnxMiniLMEmbedder(tiny_model, batch_size=1)
    assert [(await single.embed([t]))[0] for t in texts[:10]] == whole[:10]


async def test_long_texts_are_truncated_to_max_tokens(tiny_model: Path) -> None:
    embedder = OnnxMiniLMEmbedder(tiny_model, max_tokens=8)
    short, long_ = await embedder.embed(
        ["fox jumps over the lazy dog", " ".join(["fox jumps over the"] * 50)]
    )
    first_six = (await embedder.embed(["fox jumps over the fox jumps"]))[0]
    assert long_ == pytest.approx(first_six)  # [CLS] + 6 tokens + [SEP]
    assert short != pytest.approx(long_)


async def test_a_model_with_other_dimensions_is_refused(tiny_model: Path) -> None:
    embedder = OnnxMiniLMEmbedder(tiny_model, dimensions=768)
    with pytest.raises(UnavailableError, match="produces 384-dimensional vectors, expected 768"):
        await embedder.embed(["hello"])


async def test_a_corrupt_model_file_is_unavailable(tmp_path: Path, tiny_model: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((tiny_model / "tokenizer.json").read_bytes())
    (folder / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(UnavailableError, match="cannot be loaded"):
        await OnnxMiniLMEmbedder(folder).embed(["hello"])


class PooledSession:
    """An injected session for a model exported with pooling and without token_type_ids:
    returns one vector per text, [count of real tokens, 1, 0, …]."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.feeds: list[set[str]] = []

    def get_inputs(self) -> list[types.SimpleNamespace]:
        return [
            types.SimpleNamespace(name="input_ids"),
            types.SimpleNamespace(name="attention_mask"),
        ]

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, Any]) -> list[Any]:
        self.feeds.append(set(feed))
        out = np.zeros((feed["input_ids"].shape[0], self.dimensions), dtype=np.float32)
        out[:, 0] = feed["attention_mask"].sum(axis=1)
        out[:, 1] = 1.0
        return [out]


async def test_an_injected_session_gets_only_the_inputs_it_declares(tiny_model: Path) -> None:
    session = PooledSession(4)
    opened: list[Path] = []

    def factory(path: Path) -> PooledSession:
        opened.append(path)
        return session

    embedder = OnnxMiniLMEmbedder(tiny_model, dimensions=4, session_factory=factory)
    one, three = await embedder.embed(["fox", "fox fox fox"])
    assert one == pytest.approx([3 / math.sqrt(10), 1 / math.sqrt(10), 0.0, 0.0])
    assert three == pytest.approx([5 / math.sqrt(26), 1 / math.sqrt(26), 0.0, 0.0])
    assert session.feeds == [{"input_ids", "attention_mask"}]
    await embedder.embed(["again"])
    assert opened == [tiny_model / "model.onnx"]  # loaded once


# ------------------------------------------------------------ the Embedder contract suite


def _embedder_contract() -> types.ModuleType:
    path = Path(__file__).resolve().parents[1] / "contract" / "test_embedder_contract.py"
    spec = importlib.util.spec_from_file_location("_embedder_contract_for_models", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CONTRACT = _embedder_contract()
#: the checks that hold for any model. Not run: featureless texts sharing one vector (a property
#: of the hashing embedder: "?!" and "" are different token sequences to a transformer) and the
#: retrieval-quality checks, which a random tiny model cannot pass (a real one is not available
#: offline)
GENERIC_CONTRACT_CHECKS = [
    _CONTRACT.test_name_and_dimensions,
    _CONTRACT.test_one_unit_vector_per_text_in_order,
    _CONTRACT.test_deterministic,
    _CONTRACT.test_empty_batch,
    _CONTRACT.test_large_batch_in_a_thread_keeps_order,
]


@pytest.mark.parametrize("check", GENERIC_CONTRACT_CHECKS, ids=lambda f: f.__name__)
async def test_onnx_minilm_meets_the_embedder_contract(
    check: Callable[[Embedder], Any], tiny_model: Path
) -> None:
    outcome = check(OnnxMiniLMEmbedder(tiny_model))
    if inspect.isawaitable(outcome):
        await outcome


# =========================================================================== onnx-minilm: fetch


def test_the_pinned_model_is_the_one_chromadb_ships() -> None:
    """A chromadb upgrade that changes its model fails here: vectors would change under the
    same embedder name, so follow it only with a new name."""
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    assert ONNXMiniLM_L6_V2.MODEL_DOWNLOAD_URL == onnx_minilm.MODEL_URL
    assert ONNXMiniLM_L6_V2._MODEL_SHA256 == onnx_minilm.MODEL_SHA256
    assert ONNXMiniLM_L6_V2.EXTRACTED_FOLDER_NAME == onnx_minilm.ARCHIVE_FOLDER


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def archive_server(tiny_archive: tuple[Path, str]) -> Iterator[str]:
    """Serves the tiny archive's folder on 127.0.0.1; yields the archive's URL."""
    archive, _ = tiny_archive
    handler = functools.partial(_QuietHandler, directory=str(archive.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_fetching_over_http_installs_a_model_the_embedder_loads(
    tmp_path: Path, tiny_archive: tuple[Path, str], archive_server: str
) -> None:
    _, digest = tiny_archive
    target = tmp_path / "data" / "models" / "onnx-minilm"
    assert fetch_model(target, url=archive_server, sha256=digest) == target
    assert entries(target) == ["config.json", "model.onnx", "source.json", "tokenizer.json"]
    source = (target / "source.json").read_text()
    assert digest in source
    assert archive_server in source
    assert entries(target.parent) == ["onnx-minilm"]  # no staging folder left
    (vector,) = await OnnxMiniLMEmbedder(target).embed(["the quick brown fox"])
    assert len(vector) == 384


def test_a_checksum_mismatch_installs_nothing(
    tmp_path: Path, tiny_archive: tuple[Path, str]
) -> None:
    archive, _ = tiny_archive
    target = tmp_path / "models" / "onnx-minilm"
    with pytest.raises(UpstreamError, match="expected 0000") as caught:
        fetch_model(target, url=archive.as_uri(), sha256="0" * 64)
    assert "nothing was installed" in caught.value.detail
    assert entries(tmp_path / "models") == []


def test_a_failed_refetch_keeps_the_previous_model(
    tmp_path: Path, tiny_archive: tuple[Path, str]
) -> None:
    archive, digest = tiny_archive
    target = tmp_path / "models" / "onnx-minilm"
    fetch_model(target, url=archive.as_uri(), sha256=digest)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(UpstreamError):
        fetch_model(target, url=archive.as_uri(), sha256="f" * 64, force=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert entries(tmp_path / "models") == ["onnx-minilm"]


def test_a_forced_refetch_replaces_the_folder(
    tmp_path: Path, tiny_archive: tuple[Path, str]
) -> None:
    archive, digest = tiny_archive
    target = tmp_path / "models" / "onnx-minilm"
    fetch_model(target, url=archive.as_uri(), sha256=digest)
    (target / "stale.txt").write_text("from an older fetch")
    fetch_model(target, url=archive.as_uri(), sha256=digest)  # present: kept as it is
    assert (target / "stale.txt").exists()
    fetch_model(target, url=archive.as_uri(), sha256=digest, force=True)
    assert not (target / "stale.txt").exists()
    assert onnx_minilm.model_present(target)
    assert entries(tmp_path / "models") == ["onnx-minilm"]


def test_an_unreachable_source_is_unavailable(tmp_path: Path) -> None:
    target = tmp_path / "models" / "onnx-minilm"
    with pytest.raises(UnavailableError, match="could not download"):
        fetch_model(target, url=(tmp_path / "missing.tar.gz").as_uri(), sha256="0" * 64)
    assert entries(tmp_path / "models") == []


def test_an_unsupported_url_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UpstreamError, match="http, https or file"):
        fetch_model(tmp_path / "m", url="ftp://example.invalid/onnx.tar.gz", sha256="0" * 64)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"onnx/model.onnx": b"x"}, "no onnx/ folder with model.onnx and tokenizer.json"),
        ({"../escape.txt": b"x"}, "unexpected entry '../escape.txt'"),
        ({"/etc/evil": b"x"}, "unexpected entry '/etc/evil'"),
    ],
    ids=["incomplete", "parent-path", "absolute-path"],
)
def test_an_unexpected_archive_installs_nothing(
    tmp_path: Path, files: dict[str, bytes], message: str
) -> None:
    archive, digest = make_archive(tmp_path / "bad.tar.gz", files)
    target = tmp_path / "models" / "onnx-minilm"
    with pytest.raises(UpstreamError, match=message):
        fetch_model(target, url=archive.as_uri(), sha256=digest)
    assert entries(tmp_path / "models") == []
    assert not (tmp_path / "escape.txt").exists()


def test_a_file_that_is_not_an_archive_installs_nothing(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"definitely not gzip")
    digest = hashlib.sha256(junk.read_bytes()).hexdigest()
    with pytest.raises(UpstreamError, match="cannot be unpacked"):
        fetch_model(tmp_path / "models" / "m", url=junk.as_uri(), sha256=digest)
    assert entries(tmp_path / "models") == []


# =========================================================================== sentence-transformers


@pytest.fixture
def without_sentence_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails


class StandInSentenceTransformer:
    """Behaves like sentence_transformers.SentenceTransformer for the calls the adapter makes:
    refuses to load unless offline and the model is "cached", encodes to fixed vectors."""

    cached: set[str] = set()
    loads: list[dict[str, Any]] = []

    def __init__(self, source: str, **options: Any) -> None:
        if options.get("local_files_only") is not True:
            raise AssertionError("would download")
        if source not in self.cached:
            raise OSError(f"{source} is not in the cache {options.get('cache_folder')}")
        self.loads.append({"source": source, **options})

    def get_sentence_embedding_dimension(self) -> int:
        return 3

    def encode(self, texts: list[str], **options: Any) -> np.ndarray:
        assert options["normalize_embeddings"] is True
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32) / np.array(
            [[math.hypot(len(t), 1.0)] for t in texts], dtype=np.float32
        )


@pytest.fixture
def stand_in_sentence_transformers(
    monkeypatch: pytest.MonkeyPatch,
) -> type[StandInSentenceTransformer]:
    module = types.ModuleType("sentence_transformers")
    module.__spec__ = importlib.machinery.ModuleSpec("sentence_transformers", None)
    model_class = type(
        "SentenceTransformer", (StandInSentenceTransformer,), {"cached": set(), "loads": []}
    )
    module.SentenceTransformer = model_class  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    return model_class


@pytest.mark.usefixtures("without_sentence_transformers")
async def test_without_sentence_transformers_the_embedder_says_what_to_install() -> None:
    embedder = SentenceTransformersEmbedder("all-MiniLM-L6-v2")
    assert embedder.name == "st:all-MiniLM-L6-v2"
    with pytest.raises(UnavailableError, match="pip install sentence-transformers"):
        await embedder.embed(["hello"])
    with pytest.raises(UnavailableError, match="not installed"):
        _ = embedder.dimensions


async def test_a_cached_model_loads_offline_and_gives_unit_vectors(
    tmp_path: Path, stand_in_sentence_transformers: type[StandInSentenceTransformer]
) -> None:
    stand_in_sentence_transformers.cached.add("sentence-transformers/all-MiniLM-L6-v2")
    embedder = SentenceTransformersEmbedder("all-MiniLM-L6-v2", cache_dir=tmp_path)
    assert not stand_in_sentence_transformers.loads  # constructing loads nothing
    vectors = await embedder.embed(["ab", "abcd"])
    assert embedder.dimensions == 3
    assert vectors[0] == pytest.approx([2 / math.sqrt(5), 1 / math.sqrt(5), 0.0])
    for vector in vectors:
        assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-9)
    await embedder.embed(["again"])
    assert stand_in_sentence_transformers.loads == [
        {
            "source": "sentence-transformers/all-MiniLM-L6-v2",
            "device": "cpu",
            "cache_folder": str(tmp_path),
            "local_files_only": True,
        }
    ]


async def test_a_model_missing_from_the_cache_names_the_fetch_command(
    tmp_path: Path, stand_in_sentence_transformers: type[StandInSentenceTransformer]
) -> None:
    embedder = SentenceTransformersEmbedder("org/model", cache_dir=tmp_path)
    with pytest.raises(UnavailableError) as caught:
        await embedder.embed(["hello"])
    assert "run `avatarstack fetch-model st:org/model` at deploy time" in caught.value.detail
    assert str(tmp_path) in caught.value.detail


async def test_configured_dimensions_must_match_the_model(
    stand_in_sentence_transformers: type[StandInSentenceTransformer],
) -> None:
    stand_in_sentence_transformers.cached.add("org/model")
    embedder = SentenceTransformersEmbedder("org/model", dimensions=384)
    assert embedder.dimensions == 384  # known without loading
    assert not stand_in_sentence_transformers.loads
    with pytest.raises(UnavailableError, match="produces 3-dimensional vectors but 384"):
        await embedder.embed(["hello"])


def test_fetching_a_sentence_transformers_model_downloads_the_repository(
    tmp_path: Path,
) -> None:
    calls: list[dict[str, Any]] = []

    def download(**options: Any) -> str:
        calls.append(options)
        return str(tmp_path / "snapshot")

    folder = st.fetch_model("all-MiniLM-L6-v2", tmp_path / "cache", snapshot_download=download)
    assert folder == tmp_path / "snapshot"
    assert calls[0]["repo_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert calls[0]["cache_dir"] == str(tmp_path / "cache")
    assert "onnx/*" in calls[0]["ignore_patterns"]
    local = tmp_path / "my-model"
    local.mkdir()
    assert st.fetch_model(str(local), tmp_path / "cache", snapshot_download=download) == local
    assert len(calls) == 1  # a local folder needs no download


def test_a_failed_sentence_transformers_fetch_is_unavailable(tmp_path: Path) -> None:
    def download(**options: Any) -> str:
        raise OSError("connection refused")

    with pytest.raises(UnavailableError, match="could not download org/model: connection"):
        st.fetch_model("org/model", tmp_path, snapshot_download=download)


# =========================================================================== the plugin


def registered(settings: Settings) -> dict[str, Embedder]:
    pm = make_plugin_manager(load_entrypoints=False)  # model_embedders is built in
    return collect(
        pm, "register_embedders", key=lambda e: e.name, kind="embedder", settings=settings
    )


@pytest.mark.usefixtures("no_network", "without_sentence_transformers")
def test_registration_creates_embedders_without_loading_or_downloading(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        plugins={"sentence_transformers": {"model": "org/model"}},  # not installed: skipped
    )
    available = registered(settings)
    assert set(available) == {"hashing", "onnx-minilm"}
    onnx = available["onnx-minilm"]
    assert isinstance(onnx, OnnxMiniLMEmbedder)
    assert onnx.model_dir == tmp_path / "data" / "models" / "onnx-minilm"
    assert onnx.dimensions == 384
    assert not (tmp_path / "data").exists()  # the model folder is missing and nobody minded


@pytest.mark.usefixtures("no_network")
def test_the_configured_embedder_is_picked_by_name(
    tmp_path: Path, stand_in_sentence_transformers: type[StandInSentenceTransformer]
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        kb={"embedder": "st:org/model"},
        plugins={
            "onnx_minilm": {"model_dir": str(tmp_path / "elsewhere")},
            "sentence_transformers": {"model": "org/model", "device": "cuda", "dimensions": "768"},
        },
    )
    pm = make_plugin_manager(load_entrypoints=False)  # model_embedders is built in
    embedder = pick_embedder(pm, settings)
    assert isinstance(embedder, SentenceTransformersEmbedder)
    assert (embedder.name, embedder.dimensions, embedder.device) == ("st:org/model", 768, "cuda")
    assert embedder.cache_dir == tmp_path / "models" / "sentence-transformers"
    assert not stand_in_sentence_transformers.loads
    onnx = registered(settings)["onnx-minilm"]
    assert isinstance(onnx, OnnxMiniLMEmbedder)
    assert onnx.model_dir == tmp_path / "elsewhere"


@pytest.mark.usefixtures("stand_in_sentence_transformers")
def test_invalid_sentence_transformers_dimensions_are_refused(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        plugins={"sentence_transformers": {"model": "org/model", "dimensions": "many"}},
    )
    with pytest.raises(
        PluginError,
        match=r"'model_embedders' has invalid settings: "
        r"AVATARSTACK_PLUGINS__SENTENCE_TRANSFORMERS__DIMENSIONS: .*integer",
    ):
        registered(settings)


# =========================================================================== fetch-model command


@pytest.fixture
def fetch_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_archive: tuple[Path, str]
) -> click.Group:
    """A command group with the plugin's commands; the default source is the tiny archive."""
    archive, digest = tiny_archive
    monkeypatch.setattr(onnx_minilm, "MODEL_URL", archive.as_uri())
    monkeypatch.setattr(onnx_minilm, "MODEL_SHA256", digest)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVATARSTACK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("AVATARSTACK_PLUGINS__ONNX_MINILM__MODEL_DIR", raising=False)

    @click.group()
    def cli() -> None:
        pass

    pm = make_plugin_manager(load_entrypoints=False)

    def load() -> model_embedders.ModelEmbeddersSettings:
        view = settings_view(pm, "model_embedders", Settings())
        assert isinstance(view, model_embedders.ModelEmbeddersSettings)
        return view

    model_embedders.register_commands(cli, settings=load)
    return cli


def test_fetch_model_installs_onnx_minilm_where_the_embedder_looks(
    fetch_cli: click.Group, tmp_path: Path
) -> None:
    result = CliRunner().invoke(fetch_cli, ["fetch-model", "onnx-minilm"])
    assert result.exit_code == 0, result.output
    target = tmp_path / "data" / "models" / "onnx-minilm"
    assert "ready" in result.output
    assert onnx_minilm.model_present(target)
    again = CliRunner().invoke(fetch_cli, ["fetch-model", "onnx-minilm"])
    assert again.exit_code == 0, again.output
    assert "already in" in again.output


def test_fetch_model_takes_a_folder(fetch_cli: click.Group, tmp_path: Path) -> None:
    result = CliRunner().invoke(fetch_cli, ["fetch-model", "onnx-minilm", "--dir", "m"])
    assert result.exit_code == 0, result.output
    assert onnx_minilm.model_present(tmp_path / "m")


def test_fetch_model_reports_a_bad_checksum_without_a_traceback(
    fetch_cli: click.Group, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_minilm, "MODEL_SHA256", "0" * 64)
    result = CliRunner().invoke(fetch_cli, ["fetch-model", "onnx-minilm"])
    assert result.exit_code == 1
    assert "expected 0000" in result.output
    assert "Traceback" not in result.output
    assert entries(tmp_path / "data" / "models") == []


def test_fetch_model_refuses_names_without_a_model(fetch_cli: click.Group) -> None:
    result = CliRunner().invoke(fetch_cli, ["fetch-model", "nonsense"])
    assert result.exit_code == 2
    assert "use onnx-minilm or st:<model>" in result.output
    hashing = CliRunner().invoke(fetch_cli, ["fetch-model", "hashing"])
    assert hashing.exit_code == 0
    assert "needs no model" in hashing.output
    mirror = CliRunner().invoke(fetch_cli, ["fetch-model", "st:org/m", "--url", "http://x"])
    assert mirror.exit_code == 2
    assert "--url works with onnx-minilm only" in mirror.output
