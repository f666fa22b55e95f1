"""All services of one server, wired together once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from ecigdis_ws.clock import Clock
from ecigdis_ws.cluster.presence import PresenceRegistry
from ecigdis_ws.cluster.typing_state import TypingStore
from ecigdis_ws.domain import UserId
from ecigdis_ws.fanout.base import Fanout
from ecigdis_ws.fanout.notifier import DeliveryNotifier
from ecigdis_ws.observability.metrics import Metrics
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.admission import AdmissionService
from ecigdis_ws.services.auth import TokenVerifier, parse_user_id
from ecigdis_ws.services.conversations import ConversationLimits, ConversationService
from ecigdis_ws.services.error_reports import ErrorReports
from ecigdis_ws.services.event_feed import EventFeed
from ecigdis_ws.services.inbox import InboxService
from ecigdis_ws.services.live_events import LiveEvents
from ecigdis_ws.services.long_poll import LongPollService
from ecigdis_ws.services.member_rules import MemberRules
from ecigdis_ws.services.messages import MessageService
from ecigdis_ws.services.presence import PresenceService
from ecigdis_ws.services.rate_limit import RateLimiter
from ecigdis_ws.services.reactions import ReactionService
from ecigdis_ws.services.receipts import ReceiptService
from ecigdis_ws.services.retention import RetentionService
from ecigdis_ws.services.server_api import ServerApiService
from ecigdis_ws.services.sessions import SessionLimits, SessionService
from ecigdis_ws.services.tasks import BackgroundTasks
from ecigdis_ws.services.typing_indicators import TypingService
from ecigdis_ws.settings import Settings
from ecigdis_ws.storage.base import Storage


@dataclass(frozen=True)
class ChatServices:
    settings: Settings
    server_id: str
    clock: Clock
    storage: Storage
    metrics: Metrics
    tasks: BackgroundTasks
    admission: AdmissionService
    sessions: SessionService
    presence: PresenceService
    typing: TypingService
    conversations: ConversationService
    messages: MessageService
    receipts: ReceiptService
    reactions: ReactionService
    errors: ErrorReports
    # Shared with the REST API (transport/rest_routes.py): one membership cache.
    access: AccessPolicy
    fanout: Fanout
    # Started by the app (app.py), not by build: deletes past EVENT_LOG_RETENTION_S
    # and MESSAGE_RETENTION_DAYS in the background.
    retention: RetentionService

    @classmethod
    def build(
        cls,
        settings: Settings,
        clock: Clock,
        storage: Storage,
        fanout: Fanout,
        metrics: Metrics,
        presence_registry: PresenceRegistry,
        typing_store: TypingStore,
    ) -> ChatServices:
        tasks = BackgroundTasks()
        access = AccessPolicy(
            storage, settings.conversation_access, clock, settings.membership_cache_s
        )

        def user_id(raw: str) -> UserId:
            # Ids read back from shared state were written by us from valid ids.
            parsed = parse_user_id(raw, settings.user_id_type)
            return raw if parsed is None else parsed

        typing = TypingService(
            fanout, access, clock, tasks, typing_store, settings.typing_timeout_ms, user_id
        )
        presence = PresenceService(
            fanout, storage, clock, tasks, presence_registry,
            settings.presence_grace_ms, settings.presence_ttl_ms, user_id, metrics,
            settings.presence_scope,
        )
        admission = AdmissionService(
            clock, tasks, settings.auth_timeout_ms / 1000, settings.max_unauthenticated_per_ip
        )
        errors = ErrorReports(metrics.errors, fanout)
        sessions = SessionService(
            TokenVerifier(settings, clock),
            presence,
            typing,
            storage,
            fanout,
            clock,
            tasks,
            RateLimiter(settings.rate_limit_events, clock),
            SessionLimits(settings.auth_timeout_ms, settings.max_connections_per_user),
            admission,
            errors,
        )
        return cls(
            settings=settings,
            server_id=settings.effective_server_id,
            clock=clock,
            storage=storage,
            metrics=metrics,
            tasks=tasks,
            admission=admission,
            sessions=sessions,
            presence=presence,
            typing=typing,
            conversations=ConversationService(
                storage, fanout, access, presence, typing,
                ConversationLimits(
                    settings.max_rooms_per_socket, settings.presence_list_max,
                    settings.replay_max_messages,
                ),
            ),
            messages=MessageService(
                storage, fanout, access, typing, clock, metrics, settings.db_timeout_ms / 1000,
                RateLimiter(settings.rate_limit_messages, clock),
            ),
            receipts=ReceiptService(storage, fanout, access, clock),
            reactions=ReactionService(storage, fanout, access, clock),
            errors=errors,
            access=access,
            fanout=fanout,
            retention=RetentionService(
                storage, clock, tasks, settings.event_log_retention_s,
                settings.message_retention_days, settings.db_timeout_ms,
            ),
        )


@dataclass(frozen=True)
class RestServices:
    """What the REST API adds to the chat services: the long-poll's event feed,
    the main site's server API and the conversation list. The server API and the
    live events (typing and presence for the long-poll) are told of every delivery
    through the notifier."""

    feed: EventFeed
    server: ServerApiService
    inbox: InboxService
    polls: LongPollService

    @classmethod
    def build(cls, chat: ChatServices, notifier: DeliveryNotifier) -> RestServices:
        settings = chat.settings
        live = LiveEvents(chat.clock)
        feed = EventFeed(
            chat.storage, chat.clock, settings.long_poll_timeout_ms / 1000, settings.db_timeout_ms,
            settings.max_polls_per_user, live, chat.fanout.watch,
        )
        server = ServerApiService(
            chat.storage, chat.fanout, chat.access, chat.presence, chat.typing, feed,
            chat.clock, chat.tasks, chat.metrics, settings.db_timeout_ms / 1000,
            settings.user_id_type, settings.max_conversation_members,
        )
        rules = MemberRules(
            chat.storage, chat.clock, settings.max_conversation_members,
            settings.member_add_policy, settings.rate_limit_conversations,
        )
        notifier.subscribe(server.delivered)
        notifier.subscribe(live.delivered)
        return cls(
            feed, server, InboxService(chat.storage, chat.access, chat.clock, rules, chat.fanout),
            LongPollService(feed, live, chat.presence),
        )
