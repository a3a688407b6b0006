"""Built-in plugin: embedders backed by a downloaded model, and ``avatarstack fetch-model``.

* ``onnx-minilm`` (:class:`~avatarstack.adapters.embedders.onnx_minilm.OnnxMiniLMEmbedder`,
  384 dimensions) is registered whenever onnxruntime and tokenizers are installed (they come
  with chromadb). Its model folder is ``AVATARSTACK_PLUGINS__ONNX_MINILM__MODEL_DIR``, by
  default ``<data dir>/models/onnx-minilm``.
* ``st:<model>`` (:class:`~avatarstack.adapters.embedders.sentence_transformers.
  SentenceTransformersEmbedder`) is registered when ``AVATARSTACK_PLUGINS__SENTENCE_TRANSFORMERS__
  MODEL`` is set and sentence-transformers is installed. Optional keys: ``DEVICE`` (``cpu``),
  ``CACHE_DIR`` (``<data dir>/models/sentence-transformers``), ``DIMENSIONS`` (skips loading the
  model at start-up to learn it), ``BATCH_SIZE``.

Registering only creates objects: no package is imported beyond a ``find_spec`` check, no model
is read and nothing is downloaded. Models are fetched at deploy time with
``avatarstack fetch-model onnx-minilm`` or ``avatarstack fetch-model st:<model>``; embedding with
a missing model fails with ``UnavailableError`` naming that command.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import structlog

from avatarstack.adapters.embedders import onnx_minilm, sentence_transformers
from avatarstack.adapters.embedders.onnx_minilm import OnnxMiniLMEmbedder
from avatarstack.adapters.embedders.sentence_transformers import SentenceTransformersEmbedder
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.embeddings import Embedder
from avatarstack.ports.errors import AvatarstackError

if TYPE_CHECKING:
    from avatarstack.bootstrap.settings import Settings

log = structlog.get_logger("avatarstack.embedders")

#: ``settings.plugins`` keys (``AVATARSTACK_PLUGINS__<KEY>__…``)
ONNX_SETTINGS = "onnx_minilm"
ST_SETTINGS = "sentence_transformers"


def _installed(package: str) -> bool:
    """Whether ``package`` can be imported, without importing it (torch takes seconds)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _plugin_settings(settings: Settings, key: str) -> Mapping[str, Any]:
    values = settings.plugins.get(key) or {}
    return values if isinstance(values, Mapping) else {}


def onnx_model_dir(settings: Settings) -> Path:
    """Where ``onnx-minilm`` loads its model from and ``fetch-model`` puts it."""
    configured = _plugin_settings(settings, ONNX_SETTINGS).get("model_dir")
    return Path(configured) if configured else settings.data_dir / "models" / "onnx-minilm"


def st_cache_dir(settings: Settings) -> Path:
    """The Hugging Face cache folder of the sentence-transformers embedder."""
    configured = _plugin_settings(settings, ST_SETTINGS).get("cache_dir")
    return (
        Path(configured) if configured else settings.data_dir / "models" / "sentence-transformers"
    )


def _positive_int(values: Mapping[str, Any], key: str) -> int | None:
    raw = values.get(key)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise ValueError(
            f"AVATARSTACK_PLUGINS__{ST_SETTINGS.upper()}__{key.upper()} must be a positive "
            f"integer, not {raw!r}"
        )
    return value


@hookimpl
def register_embedders(register: Callable[[Embedder], None], settings: Settings) -> None:
    if _installed("onnxruntime") and _installed("tokenizers"):
        register(OnnxMiniLMEmbedder(onnx_model_dir(settings)))
    st = _plugin_settings(settings, ST_SETTINGS)
    model = st.get("model")
    if not model:
        return
    if not _installed("sentence_transformers"):
        log.warning(
            "embedder_unavailable",
            embedder=f"{sentence_transformers.NAME_PREFIX}{model}",
            reason=f"sentence-transformers is not installed ({sentence_transformers.INSTALL_HINT})",
        )
        return
    register(
        SentenceTransformersEmbedder(
            str(model),
            device=str(st.get("device") or "cpu"),
            cache_dir=st_cache_dir(settings),
            dimensions=_positive_int(st, "dimensions"),
            batch_size=_positive_int(st, "batch_size") or sentence_transformers.DEFAULT_BATCH_SIZE,
        )
    )


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(fetch_model_command)


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
def fetch_model_command(name: str, directory: Path | None, url: str | None, force: bool) -> None:
    """Download the model of embedder NAME for offline use: run it at deploy time.

    NAME is `onnx-minilm` or `st:<model>` (a sentence-transformers model such as
    `st:sentence-transformers/all-MiniLM-L6-v2`), the value of AVATARSTACK_KB__EMBEDDER."""
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
    # imported here: the CLI module imports the plugin manager, which imports this plugin
    from avatarstack.bootstrap.cli import load_settings

    settings = load_settings()
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
