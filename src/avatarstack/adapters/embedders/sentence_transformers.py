"""Any sentence-transformers model as an embedder, loaded from a local cache only.

``sentence-transformers`` (and PyTorch with it) is an optional install: this module imports it
when the model is first loaded, in a worker thread, and reports its absence as
:class:`~avatarstack.ports.errors.UnavailableError` with the ``pip install`` line. The model is
loaded with ``local_files_only=True``, so embedding never downloads: :func:`fetch_model`
(``avatarstack fetch-model st:<model>``) fills the cache at deploy time with
``huggingface_hub.snapshot_download``, into the same Hugging Face cache layout
(``models--<org>--<name>/snapshots/…``) that sentence-transformers reads.

A model name without an organisation (``all-MiniLM-L6-v2``) means
``sentence-transformers/all-MiniLM-L6-v2``, as in sentence-transformers itself; a name that is a
local folder is loaded from there. The embedder is named ``st:<model name as configured>``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from avatarstack.adapters.embedders._model import ThreadedModelEmbedder
from avatarstack.ports.errors import UnavailableError

NAME_PREFIX = "st:"
#: the organisation sentence-transformers assumes for a bare model name
DEFAULT_ORGANISATION = "sentence-transformers"
DEFAULT_BATCH_SIZE = 32
#: repository files sentence-transformers on PyTorch never reads (other runtimes' weights)
IGNORE_PATTERNS = (
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.onnx",
    "onnx/*",
    "openvino/*",
    "flax_model*",
    "tf_model*",
    "rust_model*",
)
INSTALL_HINT = "pip install sentence-transformers"


def repo_id(model_name: str) -> str:
    """The Hugging Face repository of ``model_name`` (a bare name is a sentence-transformers
    model)."""
    return model_name if "/" in model_name else f"{DEFAULT_ORGANISATION}/{model_name}"


def _is_local(model_name: str) -> bool:
    return Path(model_name).expanduser().is_dir()


class SentenceTransformersEmbedder(ThreadedModelEmbedder):
    """The ``st:<model_name>`` embedder.

    ``dimensions`` is read from the model when it is first needed, which loads the model; pass
    it to avoid that load at start-up (the loaded model must then agree). ``cache_dir`` is the
    Hugging Face cache folder :func:`fetch_model` fills (None: the default Hugging Face cache).
    """

    def __init__(
        self,
        model_name: str,
        device: str = "cpu",
        cache_dir: Path | str | None = None,
        *,
        dimensions: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if not model_name:
            raise ValueError("model_name must not be empty")
        if dimensions is not None and dimensions < 1:
            raise ValueError("dimensions must be positive")
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.model_name = model_name
        self.name = f"{NAME_PREFIX}{model_name}"
        self.device = device
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size = batch_size
        self._dimensions = dimensions
        self._lock = threading.Lock()
        self._model: Any = None

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self._load()
        assert self._dimensions is not None
        return self._dimensions

    @dimensions.setter
    def dimensions(self, value: int) -> None:
        self._dimensions = value

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """The synchronous core of :meth:`embed` (CPU/GPU-bound; call it off the event loop)."""
        import numpy as np

        texts = list(texts)
        if not texts:
            return []
        model = self._load()
        try:
            encoded = model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        except Exception as exc:  # torch errors (out of memory, device lost) have no common base
            raise UnavailableError(f"embedding with {self.name} failed: {exc}") from exc
        matrix = np.asarray(encoded, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape != (len(texts), self.dimensions):
            raise UnavailableError(
                f"{self.name} returned vectors of shape {matrix.shape}, "
                f"expected ({len(texts)}, {self.dimensions})"
            )
        # normalised again in float64: the model's float32 norms are only ~1e-7 from 1
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        rows: list[list[float]] = (matrix / np.where(norms == 0.0, 1.0, norms)).tolist()
        return rows

    def _load(self) -> Any:
        model = self._model
        if model is None:
            with self._lock:
                model = self._model
                if model is None:
                    model = self._open()
                    self._model = model
        return model

    def _open(self) -> Any:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise UnavailableError(
                f"the embedder {self.name} needs the sentence-transformers package, which is "
                f"not installed: `{INSTALL_HINT}`"
            ) from exc
        local = _is_local(self.model_name)
        source = str(Path(self.model_name).expanduser()) if local else repo_id(self.model_name)
        try:
            model = SentenceTransformer(
                source,
                device=self.device,
                cache_folder=None if self.cache_dir is None else str(self.cache_dir),
                local_files_only=True,
            )
        except Exception as exc:  # missing files surface as OSError, ValueError or hub errors
            where = source if local else (self.cache_dir or "the Hugging Face cache")
            raise UnavailableError(
                f"the sentence-transformers model {self.model_name!r} cannot be loaded from "
                f"{where} ({exc}); if it is missing, run "
                f"`avatarstack fetch-model {self.name}` at deploy time"
            ) from exc
        size = model.get_sentence_embedding_dimension()
        if size is None:  # models without a pooling module do not know it up front
            size = len(model.encode([""], convert_to_numpy=True, show_progress_bar=False)[0])
        size = int(size)
        if self._dimensions is not None and self._dimensions != size:
            raise UnavailableError(
                f"{self.name} produces {size}-dimensional vectors but {self._dimensions} "
                "dimensions are configured"
            )
        self._dimensions = size
        return model


def fetch_model(
    model_name: str,
    cache_dir: Path | str,
    *,
    snapshot_download: Callable[..., str] | None = None,
) -> Path:
    """Download ``model_name`` into the Hugging Face cache at ``cache_dir`` (deploy time) and
    return the snapshot folder; a local folder is returned as it is.

    Needs only ``huggingface_hub`` (installed with tokenizers), not sentence-transformers, so an
    image can be prepared before the heavy packages are added. ``snapshot_download`` replaces
    ``huggingface_hub.snapshot_download`` (tests). Files are downloaded to temporary names and
    renamed; an interrupted fetch is resumed by running it again.
    """
    if _is_local(model_name):
        return Path(model_name).expanduser()
    download = snapshot_download or _hub_snapshot_download()
    repository = repo_id(model_name)
    try:
        folder = download(
            repo_id=repository,
            cache_dir=str(cache_dir),
            ignore_patterns=list(IGNORE_PATTERNS),
        )
    except Exception as exc:  # network, authentication, unknown repository
        raise UnavailableError(f"could not download {repository}: {exc}") from exc
    return Path(folder)


def _hub_snapshot_download() -> Callable[..., str]:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise UnavailableError(
            "fetching a sentence-transformers model needs the huggingface_hub package: "
            "`pip install huggingface_hub`"
        ) from exc
    download: Callable[..., str] = snapshot_download
    return download
