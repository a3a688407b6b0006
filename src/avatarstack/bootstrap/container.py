"""The dependency-injector container: which adapter serves each port, chosen by settings.

Swap any piece with ``container.<provider>.override(providers.Object(thing))`` before the app
starts — tests and embedding services do exactly that.

This is the one place that shows what runs: one provider per port and per use-case service. The
small factories the providers call (how each piece is made from the settings and the plugins)
live in :mod:`avatarstack.bootstrap.wiring`, one module per context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from avatarstack import __version__
from avatarstack.adapters.argon2 import Argon2PasswordHasher
from avatarstack.adapters.bm25 import Bm25sIndexer
from avatarstack.adapters.broadcast.commands import BroadcastCommandRelay
from avatarstack.adapters.console import ConsoleMailer
from avatarstack.adapters.http.links import HttpLinks
from avatarstack.adapters.http.metrics import HttpMetrics
from avatarstack.adapters.memory import MemoryStorage
from avatarstack.adapters.postgres import PostgresOptions, PostgresStorage
from avatarstack.adapters.scrypt import ScryptPasswordHasher
from avatarstack.adapters.smtp import SmtpMailer
from avatarstack.adapters.sqlite import SqliteStorage
from avatarstack.adapters.system import SystemClock
from avatarstack.bootstrap.settings import Settings
from avatarstack.core.avatars import AvatarMaintenance, AvatarService
from avatarstack.core.conversations import (
    ConversationAnswers,
    ConversationAvatar,
    ConversationLog,
    ConversationService,
    ConversationServiceStorage,
)
from avatarstack.core.identity import (
    AdminService,
    AuthenticationService,
    IdentityKernel,
    IdentityService,
    MailOutbox,
    OAuthService,
    PasswordService,
    RegistrationService,
    SessionService,
    SessionTokens,
)
from avatarstack.core.knowledge import KnowledgeServiceStorage
from avatarstack.core.ratelimit import RateLimiter
from avatarstack.plugins.manager import PluginManager, make_plugin_manager
from avatarstack.ports.avatar import AvatarProviderContext
from avatarstack.ports.storage import Storage

if TYPE_CHECKING:
    from avatarstack.ports.storage import (
        AvatarStorage,
        IdentityStorage,
        JobStorage,
        KnowledgeStorage,
    )


from avatarstack.bootstrap.wiring.avatars import (
    collect_avatar_providers,
    make_avatar_policy,
    pick_avatar_provider,
)
from avatarstack.bootstrap.wiring.conversations import (
    collect_answer_engines,
    make_broadcaster,
    make_conversation_config,
    pick_answer_engine,
    several_instances,
)
from avatarstack.bootstrap.wiring.identity import (
    collect_oauth_providers,
    make_access_tokens,
    make_identity_policy,
    make_server_key,
    reveal,
)
from avatarstack.bootstrap.wiring.knowledge import (
    Parsing,
    collect_parsers,
    make_knowledge,
    make_knowledge_config,
    make_knowledge_store,
    pick_embedder,
)
from avatarstack.bootstrap.wiring.resources import closing, closing_all, started

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
    storage_resource = providers.Resource(started, item=storage)

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
            password=providers.Callable(reveal, settings.provided.mail.smtp_password),
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
    broadcaster_resource = providers.Resource(started, item=broadcaster)
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
    identity_resource = providers.Resource(closing, item=identity)

    avatar_commands = providers.Singleton(
        BroadcastCommandRelay,
        broadcaster=broadcaster,
        ack_timeout=settings.provided.realtime.command_ack_seconds,
        remote=providers.Callable(several_instances, settings=settings),
    )
    avatar_commands_resource = providers.Resource(closing, item=avatar_commands)
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
    avatar_resource = providers.Resource(closing_all, items=avatar_providers)

    parsers = providers.Singleton(collect_parsers, pm=plugin_manager)
    parsing = providers.Singleton(Parsing, parsers=parsers, settings=settings)
    embedder = providers.Singleton(pick_embedder, pm=plugin_manager, settings=settings)
    knowledge_store = providers.Singleton(make_knowledge_store, settings=settings)
    knowledge_store_resource = providers.Resource(closing, item=knowledge_store)
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
    answer_engines_resource = providers.Resource(closing_all, items=answer_engines)
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
