"""all-MiniLM-L6-v2 on ONNX Runtime: the model Chroma bundles, loaded from a local folder only.

The model is the one ``chromadb.utils.embedding_functions.ONNXMiniLM_L6_V2`` downloads on first
use (an ``onnx.tar.gz`` archive whose ``onnx/`` folder holds ``model.onnx``, ``tokenizer.json``
and the tokenizer's configuration). This adapter never downloads anything when it embeds: it
loads ``model.onnx`` and ``tokenizer.json`` from ``model_dir`` and raises
:class:`~avatarstack.ports.errors.UnavailableError` when they are missing. :func:`fetch_model`
is the explicit deploy-time download (``avatarstack fetch-model onnx-minilm``): it checks the
archive's SHA-256 and puts the folder in place with one rename, so a model folder is either
complete or absent.

Inference matches Chroma's: WordPiece tokens truncated to :data:`MAX_TOKENS`, a forward pass,
mean pooling over the attention mask and L2 normalisation. Texts are sorted by length and padded
per batch of ``batch_size`` (Chroma pads every text to 256 tokens, which makes short queries far
slower for the same result). onnxruntime, tokenizers and numpy are dependencies of chromadb; they
are imported when the model is first loaded, in a worker thread, never at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from avatarstack.adapters.embedders._model import ThreadedModelEmbedder
from avatarstack.ports.errors import UnavailableError, UpstreamError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: the embedder name recorded on index generations; a different model needs a different name
NAME = "onnx-minilm"
DIMENSIONS = 384
#: sentence-transformers' ``max_seq_length`` for all-MiniLM-L6-v2 (Chroma uses it too)
MAX_TOKENS = 256
DEFAULT_BATCH_SIZE = 32

#: the archive Chroma downloads (``ONNXMiniLM_L6_V2.MODEL_DOWNLOAD_URL`` / ``_MODEL_SHA256``);
#: pinned here so a chromadb upgrade cannot change the vectors under the same embedder name
MODEL_URL = "https://chroma-onnx-models.s3.amazonaws.com/all-MiniLM-L6-v2/onnx.tar.gz"
MODEL_SHA256 = "913d7300ceae3b2dbc2c50d1de4baacab4be7b9380491c27fab7418616a16ec3"
#: the folder of the archive that holds the model files
ARCHIVE_FOLDER = "onnx"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
#: the files a model folder needs (the archive's other files are kept but not read)
REQUIRED_FILES = (MODEL_FILE, TOKENIZER_FILE)
#: written by :func:`fetch_model` next to the model: where it came from and its checksum
SOURCE_FILE = "source.json"
_URL_SCHEMES = frozenset({"http", "https", "file"})
_CHUNK_BYTES = 1 << 20


def model_present(model_dir: Path | str) -> bool:
    """True when ``model_dir`` holds every file the embedder loads."""
    folder = Path(model_dir)
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def missing_model_message(model_dir: Path | str) -> str:
    return (
        f"the ONNX MiniLM model is not in {model_dir}; "
        f"run `avatarstack fetch-model {NAME}` at deploy time"
    )


class OnnxInput(Protocol):
    name: str


class OnnxSession(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the embedder uses."""

    def get_inputs(self) -> Sequence[OnnxInput]: ...

    def run(
        self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any]
    ) -> list[Any]: ...


#: builds the inference session from the path of ``model.onnx`` (tests pass a fake)
SessionFactory = Callable[[Path], OnnxSession]


@dataclass(frozen=True, slots=True)
class _Loaded:
    tokenizer: Any
    session: OnnxSession
    input_names: frozenset[str]
    pad_id: int


class OnnxMiniLMEmbedder(ThreadedModelEmbedder):
    """The ``onnx-minilm`` embedder: 384 dimensions, model files from ``model_dir``.

    The model is loaded on the first :meth:`embed` (or :meth:`ping`), in a worker thread; every
    batch then runs in a worker thread too. ``session_factory`` replaces the onnxruntime session
    (tests); ``providers`` are onnxruntime execution providers (default: CPU).
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        name: str = NAME,
        dimensions: int = DIMENSIONS,
        max_tokens: int = MAX_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        providers: Sequence[str] | None = None,
        session_factory: SessionFactory | None = None,
    ) -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be positive")
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if max_tokens < 2:
            raise ValueError("max_tokens must be at least 2")
        self.name = name
        self.dimensions = dimensions
        self.model_dir = Path(model_dir)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._providers = list(providers) if providers else ["CPUExecutionProvider"]
        self._session_factory = session_factory
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """The synchronous core of :meth:`embed` (CPU-bound; call it off the event loop)."""
        texts = list(texts)
        if not texts:
            return []
        loaded = self._load()
        encodings = loaded.tokenizer.encode_batch(texts)
        # similar lengths share a batch, so little compute goes to padding
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for index, vector in zip(
                batch, self._run(loaded, [encodings[i].ids for i in batch]), strict=True
            ):
                vectors[index] = vector
        return vectors

    # ------------------------------------------------------------------ inference

    def _run(self, loaded: _Loaded, token_ids: list[list[int]]) -> list[list[float]]:
        import numpy as np

        width = max(len(ids) for ids in token_ids)
        input_ids = np.full((len(token_ids), width), loaded.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(token_ids), width), dtype=np.int64)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        feeds = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": np.zeros_like(input_ids),
        }
        try:
            outputs = loaded.session.run(
                None, {k: v for k, v in feeds.items() if k in loaded.input_names}
            )
        except Exception as exc:  # onnxruntime's errors are RuntimeError subclasses, mostly
            raise UnavailableError(f"ONNX MiniLM inference failed: {exc}") from exc
        hidden = np.asarray(outputs[0], dtype=np.float64)
        if hidden.ndim == 3:  # token states: mean over the real (unpadded) tokens
            mask = attention_mask[:, :, np.newaxis].astype(np.float64)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        elif hidden.ndim == 2:  # a model exported with its pooling layer
            pooled = hidden
        else:
            raise UnavailableError(
                f"the ONNX model in {self.model_dir} returns an output of shape {hidden.shape}"
            )
        if pooled.shape[1] != self.dimensions:
            raise UnavailableError(
                f"the ONNX model in {self.model_dir} produces {pooled.shape[1]}-dimensional "
                f"vectors, expected {self.dimensions}"
            )
        return _unit_rows(pooled)

    # ------------------------------------------------------------------ loading

    def _load(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                loaded = self._loaded
                if loaded is None:
                    loaded = self._loaded = self._open()
        return loaded

    def _open(self) -> _Loaded:
        if not model_present(self.model_dir):
            raise UnavailableError(missing_model_message(self.model_dir))
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise UnavailableError(
                "the onnx-minilm embedder needs the tokenizers package (a chromadb dependency)"
            ) from exc
        try:
            tokenizer = Tokenizer.from_file(str(self.model_dir / TOKENIZER_FILE))
        except Exception as exc:  # tokenizers raises plain Exception for unreadable files
            raise UnavailableError(
                f"the tokenizer in {self.model_dir} cannot be loaded: {exc}"
            ) from exc
        tokenizer.enable_truncation(max_length=self.max_tokens)
        tokenizer.no_padding()  # padded per batch in _run
        pad_id = tokenizer.token_to_id("[PAD]")
        factory = self._session_factory or self._onnxruntime_session
        try:
            session = factory(self.model_dir / MODEL_FILE)
        except UnavailableError:
            raise
        except Exception as exc:  # a corrupt or incompatible model file
            raise UnavailableError(
                f"the ONNX model in {self.model_dir} cannot be loaded: {exc}"
            ) from exc
        input_names = frozenset(i.name for i in session.get_inputs())
        if "input_ids" not in input_names:
            raise UnavailableError(
                f"the ONNX model in {self.model_dir} has no input_ids input "
                f"(inputs: {', '.join(sorted(input_names))})"
            )
        return _Loaded(tokenizer, session, input_names, 0 if pad_id is None else pad_id)

    def _onnxruntime_session(self, path: Path) -> OnnxSession:
        try:
            import onnxruntime
        except ImportError as exc:
            raise UnavailableError(
                "the onnx-minilm embedder needs the onnxruntime package (a chromadb dependency)"
            ) from exc
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session: OnnxSession = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=self._providers
        )
        return session


def _unit_rows(matrix: npt.NDArray[np.float64]) -> list[list[float]]:
    import numpy as np

    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    zero = norms[:, 0] == 0.0
    unit = matrix / np.where(norms == 0.0, 1.0, norms)
    if zero.any():  # an all-zero output (practically impossible) still gets a unit vector
        unit[zero] = 0.0
        unit[zero, 0] = 1.0
    rows: list[list[float]] = unit.tolist()
    return rows


# ---------------------------------------------------------------------- deploy-time download


def fetch_model(
    target_dir: Path | str,
    *,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download the model archive, check its SHA-256 and put the model folder at ``target_dir``.

    ``url`` defaults to :data:`MODEL_URL` and ``sha256`` to :data:`MODEL_SHA256`; ``url`` may
    be a mirror or a ``file://`` URL of an archive copied onto the host (the checksum is checked
    all the same). Everything happens in a temporary folder next to ``target_dir``, which appears
    with one rename once the archive is verified and unpacked: a failed or interrupted fetch
    leaves any previous model untouched and nothing else behind. A complete ``target_dir`` is
    kept as it is unless ``force``. Raises ``UnavailableError`` when the source cannot be read
    and ``UpstreamError`` when the archive is not the expected one.
    """
    target = Path(target_dir)
    source = url or MODEL_URL
    expected = (sha256 or MODEL_SHA256).lower()
    if model_present(target) and not force:
        return target
    if urlsplit(source).scheme not in _URL_SCHEMES:
        raise UpstreamError(f"cannot download {_shown(source)}: use an http, https or file URL")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".fetch", dir=target.parent)
        )
    except OSError as exc:
        raise UnavailableError(f"cannot write the model to {target}: {exc}") from exc
    try:
        archive = staging / "onnx.tar.gz"
        digest = _download(source, archive, timeout)
        if digest != expected:
            raise UpstreamError(
                f"the archive from {_shown(source)} has SHA-256 {digest}, expected {expected}: "
                "a corrupted download or a different file; nothing was installed"
            )
        model_folder = _unpack(archive, staging / "unpacked")
        (model_folder / SOURCE_FILE).write_text(
            json.dumps(
                {
                    "source": _shown(source),
                    "sha256": digest,
                    "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
                },
                indent=2,
            )
            + "\n"
        )
        _swap_into_place(model_folder, target, staging / "previous")
    except OSError as exc:
        raise UnavailableError(f"cannot write the model to {target}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _shown(url: str) -> str:
    """``url`` without credentials or query, for messages and the source file."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _download(url: str, destination: Path, timeout: float) -> str:
    digest = hashlib.sha256()
    try:
        # the scheme is checked by the caller: http(s), or file for archives copied in
        with (
            urllib.request.urlopen(url, timeout=timeout) as response,  # noqa: S310
            destination.open("wb") as out,
        ):
            while chunk := response.read(_CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise UnavailableError(f"could not download {_shown(url)}: {exc}") from exc
    return digest.hexdigest()


def _unpack(archive: Path, destination: Path) -> Path:
    """Extract the archive (regular files and folders only, nothing outside ``destination``)
    and return the folder that holds the model files."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                name = Path(member.name)
                if (
                    name.is_absolute()
                    or ".." in name.parts
                    or not (member.isfile() or member.isdir())
                ):
                    raise UpstreamError(
                        f"the model archive contains an unexpected entry {member.name!r}"
                    )
            if hasattr(tarfile, "data_filter"):
                tar.extractall(destination, members=members, filter="data")
            else:  # Python before 3.11.4; every entry was checked above
                tar.extractall(destination, members=members)  # noqa: S202
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UpstreamError(f"the model archive cannot be unpacked: {exc}") from exc
    for folder in (destination / ARCHIVE_FOLDER, destination):
        if model_present(folder):
            return folder
    raise UpstreamError(
        f"the model archive has no {ARCHIVE_FOLDER}/ folder with {' and '.join(REQUIRED_FILES)}"
    )


def _swap_into_place(new: Path, target: Path, aside: Path) -> None:
    """Rename ``new`` to ``target``; an existing ``target`` is moved to ``aside`` first and put
    back if the rename fails."""
    had_previous = target.exists() or target.is_symlink()
    if had_previous:
        os.replace(target, aside)
    try:
        os.replace(new, target)
    except OSError:
        if had_previous:
            with contextlib.suppress(OSError):
                os.replace(aside, target)
        raise
