"""The dependency-injector container: which adapter serves each port, chosen by settings.

Swap any piece with ``container.<provider>.override(providers.Object(thing))`` before the app
starts — tests and embedding services do exactly that.

Why this file is a little over 500 lines: it is the composition root, one provider per port and
the small factories they call (the identity use cases are one provider each). Split, a reader
would lose the one place that shows what runs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar

from dependency_injector import containers, providers
from pydantic import SecretStr

from avatarstack import __version__
from avatarstack.adapters.argon2 import Argon2PasswordHasher
from avatarstack.adapters.bm25 import Bm25sIndexer
from avatarstack.adapters.broadcast import LocalBroadcaster
from avatarstack.adapters.broadcast.commands import BroadcastCommandRelay
from avatarstack.adapters.chroma import ChromaKnowledgeStore, HnswOptions
from avatarstack.adapters.console import ConsoleMailer
from avatarstack.adapters.http.links import HttpLinks
from avatarstack.adapters.http.metrics import HttpMetrics
from avatarstack.adapters.jwt import JwtAccessTokens
from avatarstack.adapters.memory import MemoryKnowledgeStore, MemoryStorage
from avatarstack.adapters.parsers import choose_parser, parse_isolated
from avatarstack.adapters.postgres import PostgresOptions, PostgresStorage
from avatarstack.adapters.postgres.broadcast import PostgresBroadcaster
from avatarstack.adapters.scrypt import ScryptPasswordHasher
from avatarstack.adapters.smtp import SmtpMailer
from avatarstack.adapters.sqlite import SqliteStorage
from avatarstack.adapters.system import SystemClock
from avatarstack.bootstrap.settings import KbSettings, Settings
from avatarstack.core.avatars import AvatarMaintenance, AvatarPolicy, AvatarService
from avatarstack.core.conversations import (
    ConversationAnswers,
    ConversationAvatar,
    ConversationConfig,
    ConversationLog,
    ConversationService,
    ConversationServiceStorage,
)
from avatarstack.core.identity import (
    AdminService,
    AuthenticationService,
    IdentityKernel,
    IdentityPolicy,
    IdentityService,
    MailOutbox,
    OAuthService,
    PasswordService,
    RegistrationService,
    SessionService,
    SessionTokens,
)
from avatarstack.core.knowledge import (
    DocumentService,
    EmbeddingCache,
    EvaluationService,
    GenerationIndexes,
    GenerationService,
    IngestionService,
    KnowledgeConfig,
    KnowledgeJobs,
    KnowledgeService,
    KnowledgeServiceStorage,
    LexicalIndexes,
    ParseFunction,
    ParserChooser,
    SearchObserver,
    SearchService,
)
from avatarstack.core.ratelimit import RateLimiter
from avatarstack.core.text import ChunkerConfig
from avatarstack.plugins.manager import PluginError, PluginManager, collect, make_plugin_manager
from avatarstack.ports.answers import AnswerEngine
from avatarstack.ports.avatar import AvatarProvider, AvatarProviderContext
from avatarstack.ports.broadcast import Broadcaster
from avatarstack.ports.clock import Clock
from avatarstack.ports.documents import DocumentParser, ParsedDocument
from avatarstack.ports.embeddings import Embedder
from avatarstack.ports.knowledge import KnowledgeStore
from avatarstack.ports.lexical import LexicalIndexer
from avatarstack.ports.oauth import OAuthProvider
from avatarstack.ports.storage import Storage

if TYPE_CHECKING:
    from avatarstack.ports.storage import (
        AvatarStorage,
        IdentityStorage,
        JobStorage,
        KnowledgeStorage,
    )


async def _started_storage(storage: Storage) -> AsyncIterator[Storage]:
    """Resource: open the storage's connections for the life of the container."""
    await storage.start()
    try:
        yield storage
    finally:
        await storage.close()


if TYPE_CHECKING:

    def _storage_fits_every_service(
        sqlite: SqliteStorage, postgres: PostgresStorage, memory: MemoryStorage
    ) -> None:
        """Never called: the providers below are untyped, so mypy proves here that each adapter
        is a full Storage and that a full Storage fits the narrow storage protocol each service
        declares (identity and rate limits, knowledge + jobs, knowledge, jobs, avatars,
        conversations)."""
        adapters: list[Storage] = [sqlite, postgres, memory]
        for storage in adapters:
            fits: tuple[
                IdentityStorage,
                KnowledgeServiceStorage,
                KnowledgeStorage,
                JobStorage,
                AvatarStorage,
                ConversationServiceStorage,
            ] = (storage, storage, storage, storage, storage, storage)
            del fits


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def key_id(secret: str) -> str:
    """A public identifier of a signing secret (the JWT ``kid``): a hash prefix."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def make_access_tokens(settings: Settings) -> JwtAccessTokens:
    current = settings.resolved_secret_key().get_secret_value()
    keys = {
        key_id(old.get_secret_value()): old.get_secret_value()
        for old in settings.auth.previous_secret_keys
    }
    keys[key_id(current)] = current
    return JwtAccessTokens(
        keys,
        key_id(current),
        algorithm=settings.auth.jwt_algorithm,
        issuer=settings.auth.jwt_issuer or settings.resolved_public_url,
        audience=settings.auth.jwt_audience,
        lifetime_seconds=settings.auth.access_token_ttl,
    )


def make_server_key(settings: Settings) -> bytes:
    """The identity services' key (device cookies, refresh successors): derived from the
    secret key with HMAC and a label, so it is the same on every instance and across restarts,
    and never the token-signing key itself."""
    secret = settings.resolved_secret_key().get_secret_value().encode()
    return hmac.new(secret, b"avatarstack identity key v1", hashlib.sha256).digest()


def make_identity_policy(settings: Settings) -> IdentityPolicy:
    auth = settings.auth
    return IdentityPolicy(
        verification_ttl=timedelta(hours=auth.verification_ttl_hours),
        reset_ttl=timedelta(minutes=auth.reset_ttl_minutes),
        refresh_ttl=timedelta(days=auth.refresh_token_ttl_days),
        expose_dev_links=not settings.is_production,
        first_account_admin=auth.first_account_admin and not settings.is_production,
        principal_cache=timedelta(seconds=auth.principal_cache_seconds),
        refresh_grace=timedelta(seconds=auth.refresh_reuse_grace_seconds),
    )


def collect_oauth_providers(pm: PluginManager, settings: Settings) -> dict[str, OAuthProvider]:
    providers_: dict[str, OAuthProvider] = collect(
        pm,
        "register_oauth_providers",
        key=lambda p: p.name,
        kind="OAuth provider",
        settings=settings,
    )
    return providers_


def collect_avatar_providers(
    pm: PluginManager, settings: Settings, context: AvatarProviderContext
) -> dict[str, AvatarProvider]:
    found: dict[str, AvatarProvider] = collect(
        pm,
        "register_avatar_providers",
        key=lambda p: p.name,
        kind="avatar provider",
        settings=settings,
        context=context,
    )
    return found


T = TypeVar("T")


def pick(available: Mapping[str, T], name: str, variable: str, hint: str = "") -> T:
    """The registered plugin object ``name``, or a PluginError naming the setting and what is
    available."""
    found = available.get(name)
    if found is None:
        known = ", ".join(sorted(available)) or "none"
        raise PluginError(f"{variable}={name!r} is not available (available: {known}){hint}")
    return found


def pick_avatar_provider(
    available: dict[str, AvatarProvider], settings: Settings
) -> AvatarProvider:
    return pick(
        available,
        settings.avatar.provider,
        "AVATARSTACK_AVATAR__PROVIDER",
        "; vendor providers need their API key, e.g. AVATARSTACK_AVATAR__LIVEAVATAR__API_KEY",
    )


def make_avatar_policy(settings: Settings) -> AvatarPolicy:
    avatar = settings.avatar
    return AvatarPolicy(
        per_user=avatar.sessions_per_user,
        total=avatar.sessions_total,
        keep_alive_every=timedelta(seconds=avatar.keep_alive_seconds),
        stop_idle_after=timedelta(seconds=avatar.stop_idle_after_seconds),
        renew_before=timedelta(seconds=avatar.renew_before_seconds),
    )


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


async def _closing_all(items: dict[str, C]) -> AsyncIterator[dict[str, C]]:
    """Resource: close every item (vendor HTTP sessions, timers, clients) on shutdown."""
    try:
        yield items
    finally:
        for item in items.values():
            await item.close()


async def _closing_identity(identity: IdentityService) -> AsyncIterator[IdentityService]:
    """Resource: deliver the queued mail and close the OAuth providers' HTTP sessions on
    shutdown."""
    try:
        yield identity
    finally:
        await identity.close()


def collect_parsers(pm: PluginManager) -> list[DocumentParser]:
    found: dict[str, DocumentParser] = collect(
        pm, "register_document_parsers", key=lambda p: p.name, kind="document parser"
    )
    return list(found.values())


def pick_embedder(pm: PluginManager, settings: Settings) -> Embedder:
    available: dict[str, Embedder] = collect(
        pm, "register_embedders", key=lambda e: e.name, kind="embedder", settings=settings
    )
    return pick(available, settings.kb.embedder, "AVATARSTACK_KB__EMBEDDER")


def make_knowledge_store(settings: Settings) -> KnowledgeStore:
    """A Chroma server when ``kb.chroma_url`` is set, else embedded Chroma in the data dir
    (one process only: the folder is locked)."""
    if settings.kb.chroma_url == "memory://":
        return MemoryKnowledgeStore()
    hnsw = HnswOptions(
        m=settings.kb.hnsw_m,
        construction_ef=settings.kb.hnsw_construction_ef,
        search_ef=settings.kb.hnsw_search_ef,
    )
    if settings.kb.chroma_url:
        return ChromaKnowledgeStore.remote(settings.kb.chroma_url, hnsw=hnsw)
    return ChromaKnowledgeStore.embedded(settings.chroma_path, hnsw=hnsw)


def default_dense_weight(kb: KbSettings) -> float:
    """The dense channel's weight when ``kb.dense_weight`` is unset: the offline hashing
    embedder's cosine carries little meaning beyond shared words (which BM25 weighs better), a
    model's carries paraphrases (measured on benchmarks/retrieval.py's corpus)."""
    return 0.1 if kb.embedder == "hashing" else 0.5


def make_knowledge_config(settings: Settings) -> KnowledgeConfig:
    kb = settings.kb
    target = kb.chunk_chars
    return KnowledgeConfig(
        chunker=ChunkerConfig(
            target_chars=target,
            overlap_chars=kb.chunk_overlap_chars,
            max_chars=max(target + kb.chunk_overlap_chars, int(target * 1.5)),
        ),
        keep_generations=kb.keep_generations,
        auto_activate=kb.auto_activate,
        search_k=kb.search_k,
        dense_weight=kb.dense_weight if kb.dense_weight is not None else default_dense_weight(kb),
        candidates=kb.search_candidates,
        related_terms=kb.related_terms,
    )


def make_knowledge(
    storage: Storage,
    store: KnowledgeStore,
    embedder: Embedder,
    clock: Clock,
    *,
    parsers: Sequence[DocumentParser],
    choose_parser: ParserChooser,
    parse: ParseFunction,
    config: KnowledgeConfig | None = None,
    observer: SearchObserver | None = None,
    lexical: LexicalIndexer | None = None,
) -> KnowledgeService:
    """The knowledge base's services wired to each other (each gets the part of the storage it
    declares); tests and benchmarks call this too, with adapters of their own."""
    config = config or KnowledgeConfig()
    jobs = KnowledgeJobs(storage, clock, attempts=config.job_attempts)
    embeddings = EmbeddingCache(storage, embedder, clock, batch=config.embed_batch)
    lexical_indexes = LexicalIndexes(storage, lexical, cache=config.lexical_cache)
    search = SearchService(
        storage, store, embedder, clock, lexical_indexes, config=config, observer=observer
    )
    evaluation = EvaluationService(storage, embedder, clock, search, config=config)
    indexes = GenerationIndexes(storage, store, embeddings, batch=config.index_batch)
    generations = GenerationService(
        storage,
        store,
        embeddings,
        clock,
        jobs,
        indexes,
        lexical_indexes,
        evaluation,
        config=config,
    )
    ingestion = IngestionService(
        storage,
        embeddings,
        clock,
        generations,
        parsers=parsers,
        choose_parser=choose_parser,
        parse=parse,
        config=config,
    )
    return KnowledgeService(
        jobs=jobs,
        documents=DocumentService(storage, clock, jobs, choose_parser=choose_parser),
        ingestion=ingestion,
        generations=generations,
        indexes=indexes,
        evaluation=evaluation,
        search=search,
    )


class _Parsing:
    """The parse function and parser chooser the knowledge services get: the sandboxed child
    process with the configured limits, and the configured preference order."""

    def __init__(self, parsers: list[DocumentParser], settings: Settings) -> None:
        self.parsers = parsers
        self.prefer = tuple(settings.kb.parsers)
        unknown = sorted(set(self.prefer) - {p.name for p in parsers})
        if unknown:  # a typo, or a parser whose extra is not installed: say so, do not fall back
            known = ", ".join(sorted(p.name for p in parsers))
            raise PluginError(
                f"AVATARSTACK_KB__PARSERS names {', '.join(unknown)}, which is not available "
                f"(available: {known}); the pdfium parser needs pip install 'avatarstack[pdfium]'"
            )
        self.timeout = settings.kb.parse_timeout_seconds
        self.memory_bytes = settings.kb.parse_memory_mb * 1024 * 1024

    def choose(self, media_type: str | None, filename: str) -> DocumentParser:
        return choose_parser(self.parsers, media_type, filename, prefer=self.prefer)

    async def parse(self, parser: DocumentParser, data: bytes, filename: str) -> ParsedDocument:
        return await parse_isolated(
            parser, data, filename, timeout=self.timeout, memory_bytes=self.memory_bytes
        )


async def _closing_store(store: KnowledgeStore) -> AsyncIterator[KnowledgeStore]:
    try:
        yield store
    finally:
        await store.close()


def make_broadcaster(settings: Settings) -> Broadcaster:
    """LISTEN/NOTIFY between the instances sharing a PostgreSQL database; in-process
    otherwise (SQLite and memory storage serve one process)."""
    if settings.storage_backend == "postgres":
        return PostgresBroadcaster(
            settings.resolved_database_url, listen_url=settings.database.listen_url
        )
    return LocalBroadcaster()


def _several_instances(settings: Settings) -> bool:
    """Instances share work (and avatar commands) only through PostgreSQL."""
    return settings.storage_backend == "postgres"


async def _closing_relay(relay: BroadcastCommandRelay) -> AsyncIterator[BroadcastCommandRelay]:
    try:
        yield relay
    finally:
        await relay.close()


async def _started_broadcaster(broadcaster: Broadcaster) -> AsyncIterator[Broadcaster]:
    await broadcaster.start()
    try:
        yield broadcaster
    finally:
        await broadcaster.close()


def collect_answer_engines(pm: PluginManager, settings: Settings) -> dict[str, AnswerEngine]:
    found: dict[str, AnswerEngine] = collect(
        pm, "register_answer_engines", key=lambda e: e.name, kind="answer engine", settings=settings
    )
    return found


def pick_answer_engine(available: dict[str, AnswerEngine], settings: Settings) -> AnswerEngine:
    return pick(available, settings.answer.engine, "AVATARSTACK_ANSWER__ENGINE")


def make_conversation_config(settings: Settings) -> ConversationConfig:
    return ConversationConfig(
        passages=settings.answer.passages, min_score=settings.answer.min_score
    )


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    plugin_manager = providers.Singleton(
        make_plugin_manager, load_plugins=settings.provided.load_plugins
    )

    sqlite_storage = providers.Singleton(
        SqliteStorage,
        path=settings.provided.sqlite_path,
        busy_timeout=settings.provided.database.sqlite_busy_timeout,
    )
    postgres_storage = providers.Singleton(
        PostgresStorage,
        url=settings.provided.resolved_database_url,
        options=providers.Factory(
            PostgresOptions,
            min_size=settings.provided.database.pool_min_size,
            max_size=settings.provided.database.pool_max_size,
            command_timeout=settings.provided.database.command_timeout,
            acquire_timeout=settings.provided.database.acquire_timeout,
            connect_timeout=settings.provided.database.connect_timeout,
            startup_timeout=settings.provided.database.startup_timeout,
            statement_cache_size=settings.provided.database.statement_cache_size,
        ),
    )
    memory_storage = providers.Singleton(MemoryStorage)
    storage = providers.Selector(
        settings.provided.storage_backend,
        sqlite=sqlite_storage,
        postgres=postgres_storage,
        memory=memory_storage,
    )
    storage_resource = providers.Resource(_started_storage, storage=storage)

    metrics = providers.Singleton(HttpMetrics, version=__version__)
    clock = providers.Singleton(SystemClock)

    password_hasher = providers.Selector(
        settings.provided.auth.password_hasher,
        argon2id=providers.Singleton(
            Argon2PasswordHasher, max_concurrent=settings.provided.auth.max_concurrent_hashes
        ),
        scrypt=providers.Singleton(
            ScryptPasswordHasher, max_concurrent=settings.provided.auth.max_concurrent_hashes
        ),
    )
    access_tokens = providers.Singleton(make_access_tokens, settings=settings)
    mailer = providers.Selector(
        settings.provided.mail.backend,
        console=providers.Singleton(ConsoleMailer),
        smtp=providers.Singleton(
            SmtpMailer,
            host=settings.provided.mail.smtp_host,
            port=settings.provided.mail.smtp_port,
            sender=settings.provided.mail.from_,
            username=settings.provided.mail.smtp_username,
            password=providers.Callable(_reveal, settings.provided.mail.smtp_password),
            starttls=settings.provided.mail.smtp_starttls,
            timeout=settings.provided.mail.smtp_timeout,
        ),
    )
    rate_limiter = providers.Singleton(
        RateLimiter, storage=storage, clock=clock, enabled=settings.provided.auth.rate_limits
    )
    oauth_providers = providers.Singleton(
        collect_oauth_providers, pm=plugin_manager, settings=settings
    )
    broadcaster = providers.Singleton(make_broadcaster, settings=settings)
    broadcaster_resource = providers.Resource(_started_broadcaster, broadcaster=broadcaster)
    #: the web addresses the identity service puts in mails and redirects
    links = providers.Singleton(HttpLinks, public_url=settings.provided.resolved_public_url)
    #: the identity use cases: one kernel of shared collaborators, one service per reason to
    #: change, and the IdentityService that groups them for the adapters
    identity_policy = providers.Singleton(make_identity_policy, settings=settings)
    identity_kernel = providers.Singleton(
        IdentityKernel,
        storage=storage,
        hasher=password_hasher,
        tokens=access_tokens,
        clock=clock,
        limiter=rate_limiter,
        links=links,
        policy=identity_policy,
        server_key=providers.Callable(make_server_key, settings=settings),
        broadcaster=broadcaster,
    )
    mail_outbox = providers.Singleton(MailOutbox, mailer=mailer)
    session_tokens = providers.Singleton(SessionTokens, kernel=identity_kernel)
    identity_registration = providers.Singleton(
        RegistrationService, kernel=identity_kernel, outbox=mail_outbox
    )
    identity_sessions = providers.Singleton(
        SessionService, kernel=identity_kernel, issuer=session_tokens
    )
    identity_authentication = providers.Singleton(AuthenticationService, kernel=identity_kernel)
    identity_passwords = providers.Singleton(
        PasswordService, kernel=identity_kernel, outbox=mail_outbox
    )
    identity_oauth = providers.Singleton(
        OAuthService,
        kernel=identity_kernel,
        issuer=session_tokens,
        public_url=settings.provided.resolved_public_url,
        providers=oauth_providers,
    )
    identity_admin = providers.Singleton(AdminService, kernel=identity_kernel)
    identity = providers.Singleton(
        IdentityService,
        policy=identity_policy,
        outbox=mail_outbox,
        registration=identity_registration,
        sessions=identity_sessions,
        authentication=identity_authentication,
        passwords=identity_passwords,
        oauth=identity_oauth,
        admin=identity_admin,
    )
    identity_resource = providers.Resource(_closing_identity, identity=identity)

    avatar_commands = providers.Singleton(
        BroadcastCommandRelay,
        broadcaster=broadcaster,
        ack_timeout=settings.provided.realtime.command_ack_seconds,
        remote=providers.Callable(_several_instances, settings=settings),
    )
    avatar_commands_resource = providers.Resource(_closing_relay, relay=avatar_commands)
    avatar_context = providers.Singleton(
        AvatarProviderContext, clock=clock, commands=avatar_commands
    )
    avatar_providers = providers.Singleton(
        collect_avatar_providers, pm=plugin_manager, settings=settings, context=avatar_context
    )
    avatar_provider = providers.Singleton(
        pick_avatar_provider, available=avatar_providers, settings=settings
    )
    avatars = providers.Singleton(
        AvatarService,
        storage=storage,
        provider=avatar_provider,
        clock=clock,
        policy=providers.Factory(make_avatar_policy, settings=settings),
    )
    avatar_maintenance = providers.Singleton(AvatarMaintenance, avatars=avatars)
    avatar_resource = providers.Resource(_closing_all, items=avatar_providers)

    parsers = providers.Singleton(collect_parsers, pm=plugin_manager)
    parsing = providers.Singleton(_Parsing, parsers=parsers, settings=settings)
    embedder = providers.Singleton(pick_embedder, pm=plugin_manager, settings=settings)
    knowledge_store = providers.Singleton(make_knowledge_store, settings=settings)
    knowledge_store_resource = providers.Resource(_closing_store, store=knowledge_store)
    knowledge = providers.Singleton(
        make_knowledge,
        storage=storage,
        store=knowledge_store,
        embedder=embedder,
        clock=clock,
        parsers=parsers,
        choose_parser=parsing.provided.choose,
        parse=parsing.provided.parse,
        config=providers.Factory(make_knowledge_config, settings=settings),
        lexical=providers.Singleton(Bm25sIndexer),
        observer=metrics,
    )

    answer_engines = providers.Singleton(
        collect_answer_engines, pm=plugin_manager, settings=settings
    )
    answer_engines_resource = providers.Resource(_closing_all, items=answer_engines)
    answer_engine = providers.Singleton(
        pick_answer_engine, available=answer_engines, settings=settings
    )
    conversation_config = providers.Singleton(make_conversation_config, settings=settings)
    conversation_log = providers.Singleton(
        ConversationLog,
        storage=storage,
        clock=clock,
        broadcaster=broadcaster,
        config=conversation_config,
    )
    conversation_avatar = providers.Singleton(
        ConversationAvatar,
        storage=storage,
        conversation_log=conversation_log,
        broadcaster=broadcaster,
        avatars=avatars,
    )
    conversation_answers = providers.Singleton(
        ConversationAnswers,
        storage=storage,
        conversation_log=conversation_log,
        avatar=conversation_avatar,
        broadcaster=broadcaster,
        knowledge=knowledge.provided.search,
        engine=answer_engine,
        avatars=avatars,
        config=conversation_config,
    )
    conversations = providers.Singleton(
        ConversationService,
        log=conversation_log,
        answers=conversation_answers,
        avatar=conversation_avatar,
    )


def build_container(
    settings: Settings | None = None, *, plugin_manager: PluginManager | None = None
) -> Container:
    """A container for ``settings`` (read from the environment when None). Creates nothing yet:
    adapters are built on first use and resources start with ``init_resources()``."""
    container = Container(settings=settings or Settings())
    if plugin_manager is not None:
        container.plugin_manager.override(providers.Object(plugin_manager))
    return container
