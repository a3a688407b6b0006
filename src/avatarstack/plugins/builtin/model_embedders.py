"""Built-in plugin: embedders backed by a downloaded model, and ``avatarstack fetch-model``.

* ``onnx-minilm`` (:class:`~avatarstack.adapters.embedders.onnx_minilm.OnnxMiniLMEmbedder`,
  384 dimensions) is registered whenever onnxruntime and tokenizers are installed (they come
  with chromadb). Its model folder is ``AVATARSTACK_PLUGINS__ONNX_MINILM__MODEL_DIR``, by
  default ``<data dir>/models/onnx-minilm``.
* ``st:<model>`` (:class:`~avatarstack.adapters.embedders.sentence_transformers.
  SentenceTransformersEmbedder`) is registered when ``AVATARSTACK_PLUGINS__SENTENCE_TRANSFORMERS__
  MODEL`` is set and sentence-transformers is installed. BlankIsUnset keys: ``DEVICE`` (``cpu``),
  ``CACHE_DIR`` (``<data dir>/models/sentence-transformers``), ``DIMENSIONS`` (skips loading the
  model at start-up to learn it), ``BATCH_SIZE``.

Registering only creates objects: no package is imported beyond a ``find_spec`` check, no model
is read and nothing is downloaded. Models are fetched at deploy time with
``avatarstack fetch-model onnx-minilm`` or ``avatarstack fetch-model st:<model>``; embedding with
a missing model fails with ``UnavailableError`` naming that command.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import click
import structlog
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt

from avatarstack.adapters.embedders import onnx_minilm, sentence_transformers
from avatarstack.adapters.embedders.onnx_minilm import OnnxMiniLMEmbedder
from avatarstack.adapters.embedders.sentence_transformers import SentenceTransformersEmbedder
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.embeddings import Embedder
from avatarstack.ports.errors import AvatarstackError

log = structlog.get_logger("avatarstack.embedders")


def _blank_is_unset(value: Any) -> Any:
    return None if value == "" else value


#: an optional setting; an empty variable counts as unset
BlankIsUnset = BeforeValidator(_blank_is_unset)


class OnnxMiniLMSettings(BaseModel):
    """``AVATARSTACK_PLUGINS__ONNX_MINILM__*``."""

    model_config = ConfigDict(protected_namespaces=())

    model_dir: Annotated[Path | None, BlankIsUnset] = None


class SentenceTransformersSettings(BaseModel):
    """``AVATARSTACK_PLUGINS__SENTENCE_TRANSFORMERS__*``."""

    model_config = ConfigDict(protected_namespaces=())

    model: Annotated[str | None, BlankIsUnset] = None
    device: Annotated[str | None, BlankIsUnset] = None
    cache_dir: Annotated[Path | None, BlankIsUnset] = None
    dimensions: Annotated[PositiveInt | None, BlankIsUnset] = None
    batch_size: Annotated[PositiveInt | None, BlankIsUnset] = None


class ModelEmbeddersSettings(BaseModel):
    """What this plugin reads: the data folder and its two sections of plugin settings."""

    data_dir: Path
    onnx_minilm: OnnxMiniLMSettings = Field(default_factory=OnnxMiniLMSettings)
    sentence_transformers: SentenceTransformersSettings = Field(
        default_factory=SentenceTransformersSettings
    )


#: handed to the hooks below as ``settings``, nothing else
settings_model = ModelEmbeddersSettings
settings_section = {
    "data_dir": "data_dir",
    "onnx_minilm": "plugins.onnx_minilm",
    "sentence_transformers": "plugins.sentence_transformers",
}


def _installed(package: str) -> bool:
    """Whether ``package`` can be imported, without importing it (torch takes seconds)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def onnx_model_dir(settings: ModelEmbeddersSettings) -> Path:
    """Where ``onnx-minilm`` loads its model from and ``fetch-model`` puts it."""
    configured = settings.onnx_minilm.model_dir
    return configured or settings.data_dir / "models" / "onnx-minilm"


def st_cache_dir(settings: ModelEmbeddersSettings) -> Path:
    """The Hugging Face cache folder of the sentence-transformers embedder."""
    configured = settings.sentence_transformers.cache_dir
    return configured or settings.data_dir / "models" / "sentence-transformers"


@hookimpl
def register_embedders(
    register: Callable[[Embedder], None], settings: ModelEmbeddersSettings
) -> None:
    if _installed("onnxruntime") and _installed("tokenizers"):
        register(OnnxMiniLMEmbedder(onnx_model_dir(settings)))
    st = settings.sentence_transformers
    if not st.model:
        return
    if not _installed("sentence_transformers"):
        log.warning(
            "embedder_unavailable",
            embedder=f"{sentence_transformers.NAME_PREFIX}{st.model}",
            reason=f"sentence-transformers is not installed ({sentence_transformers.INSTALL_HINT})",
        )
        return
    register(
        SentenceTransformersEmbedder(
            st.model,
            device=st.device or "cpu",
            cache_dir=st_cache_dir(settings),
            dimensions=st.dimensions,
            batch_size=st.batch_size or sentence_transformers.DEFAULT_BATCH_SIZE,
        )
    )


@hookimpl
def register_commands(cli: click.Group, settings: Callable[[], ModelEmbeddersSettings]) -> None:
    cli.add_command(_fetch_model_command(settings))


def _fetch_model_command(load: Callable[[], ModelEmbeddersSettings]) -> click.Command:
    """``fetch-model``, reading this plugin's settings through ``load`` when it runs."""

    @click.command("fetch-model")
    @click.argument("name")
    @click.option(
        "--dir",
        "directory",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Target folder (default: the folder the embedder loads from, from the settings).",
    )
    @click.option(
        "--url",
        default=None,
        help="onnx-minilm only: download from this URL instead (a mirror, or file:///… for an "
        "archive copied onto the host); the SHA-256 is checked all the same.",
    )
    @click.option("--force", is_flag=True, help="Download again even when the model is present.")
    def fetch_model_command(
        name: str, directory: Path | None, url: str | None, force: bool
    ) -> None:
        """Download the model of embedder NAME for offline use: run it at deploy time.

        NAME is `onnx-minilm` or `st:<model>` (a sentence-transformers model such as
        `st:sentence-transformers/all-MiniLM-L6-v2`), the value of AVATARSTACK_KB__EMBEDDER."""
        fetch_model(load, name, directory, url, force)

    return fetch_model_command


def fetch_model(
    load: Callable[[], ModelEmbeddersSettings],
    name: str,
    directory: Path | None,
    url: str | None,
    force: bool,
) -> None:
    """What ``fetch-model NAME`` does."""
    if name == "hashing":
        click.echo("the hashing embedder needs no model")
        return
    is_st = name.startswith(sentence_transformers.NAME_PREFIX)
    model = name.removeprefix(sentence_transformers.NAME_PREFIX)
    if name != onnx_minilm.NAME and not (is_st and model):
        raise click.BadParameter(
            f"{name!r} has no model to fetch; use {onnx_minilm.NAME} or "
            f"{sentence_transformers.NAME_PREFIX}<model>",
            param_hint="NAME",
        )
    if is_st and url is not None:
        raise click.UsageError("--url works with onnx-minilm only")
    settings = load()
    try:
        if is_st:
            cache = directory or st_cache_dir(settings)
            click.echo(f"fetching {sentence_transformers.repo_id(model)} into {cache}")
            folder = sentence_transformers.fetch_model(model, cache)
            click.echo(f"{name} is ready in {folder}")
            return
        target = directory or onnx_model_dir(settings)
        if onnx_minilm.model_present(target) and not force:
            click.echo(f"{name} is already in {target} (--force downloads it again)")
            return
        click.echo(f"fetching {name} into {target}")
        onnx_minilm.fetch_model(target, url=url, force=force)
        click.echo(f"{name} is ready in {target} (SHA-256 verified)")
    except AvatarstackError as exc:
        raise click.ClickException(exc.detail) from exc
