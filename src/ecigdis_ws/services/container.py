"""All services of one server, each built once, in dependency order, at start-up.

The composition root (app.py) opens the resources (storage, the cluster state, the
main site's HTTP client) and hands them to `ChatServices.build`, which builds every
service with keyword arguments from the settings: no service builds another, and
none is changed after it is built.
"""

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
from ecigdis_ws.services.admission import AdmissionService, CloseConnection
from ecigdis_ws.services.auth import TokenVerifier, parse_user_id
from ecigdis_ws.services.conversations import ConversationLimits, ConversationService
from ecigdis_ws.services.error_reports import ErrorReports
from ecigdis_ws.services.event_feed import EventFeed
from ecigdis_ws.services.inbox import InboxService
from ecigdis_ws.services.live_events import LiveEvents
from ecigdis_ws.services.long_poll import LongPollService
from ecigdis_ws.services.main_site import MainSiteVerifier
from ecigdis_ws.services.member_admin import MemberAdminService
from ecigdis_ws.services.member_rules import MemberRules
from ecigdis_ws.services.message_changes import ChangeLimits, MessageChangeService
from ecigdis_ws.services.messages import MessageService
from ecigdis_ws.services.presence import PresenceService
from ecigdis_ws.services.rate_limit import RateLimiter
from ecigdis_ws.services.reactions import ReactionService
from ecigdis_ws.services.receipts import ReceiptService
from ecigdis_ws.services.retention import RetentionService
from ecigdis_ws.services.roles import Roles
from ecigdis_ws.services.send_extras import SendExtras
from ecigdis_ws.services.server_api import ServerApiService, main_site_access
from ecigdis_ws.services.sessions import SessionLimits, SessionService
from ecigdis_ws.services.tasks import BackgroundTasks
from ecigdis_ws.services.typing_indicators import TypingService
from ecigdis_ws.settings import Settings
from ecigdis_ws.storage.base import Storage


@dataclass(frozen=True, kw_only=True)
class Gates:
    """The services the HTTP layer needs before the storage opens (the admission
    check in front of Engine.IO, the error answers, the background tasks), built
    first so that the middlewares hold them rather than look them up."""

    tasks: BackgroundTasks
    admission: AdmissionService
    errors: ErrorReports

    @classmethod
    def build(
        cls,
        *,
        settings: Settings,
        clock: Clock,
        metrics: Metrics,
        fanout: Fanout,
        close_connection: CloseConnection | None,
    ) -> Gates:
        tasks = BackgroundTasks()
        return cls(
            tasks=tasks,
            admission=AdmissionService(
                clock=clock, tasks=tasks, auth_timeout_s=settings.auth_timeout_ms / 1000,
                per_address_cap=settings.max_unauthenticated_per_ip,
                close_connection=close_connection,
            ),
            errors=ErrorReports(metrics.errors, fanout),
        )


@dataclass(frozen=True, kw_only=True)
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
    changes: MessageChangeService
    members: MemberAdminService
    receipts: ReceiptService
    reactions: ReactionService
    errors: ErrorReports
    # One membership cache behind every service that checks membership.
    access: AccessPolicy
    fanout: Fanout
    # Started by the app (app.py), not by build: deletes past EVENT_LOG_RETENTION_S
    # and MESSAGE_RETENTION_DAYS in the background.
    retention: RetentionService
    # The REST API's: the long-poll's event feed, the main site's server API, the
    # conversation list. The server API and the live events (typing and presence
    # for the long-poll) are told of every delivery through the notifier.
    feed: EventFeed
    server: ServerApiService
    inbox: InboxService
    polls: LongPollService

    @classmethod
    def build(
        cls,
        *,
        settings: Settings,
        clock: Clock,
        storage: Storage,
        fanout: Fanout,
        metrics: Metrics,
        presence_registry: PresenceRegistry,
        typing_store: TypingStore,
        notifier: DeliveryNotifier,
        gates: Gates,
        main_site: MainSiteVerifier | None = None,
    ) -> ChatServices:
        tasks, admission, errors = gates.tasks, gates.admission, gates.errors
        access = AccessPolicy(conversations=storage.conversations,
                              mode=settings.conversation_access, clock=clock,
                              cache_s=settings.membership_cache_s)

        def user_id(raw: str) -> UserId:
            # Ids read back from shared state were written by us from valid ids.
            parsed = parse_user_id(raw, settings.user_id_type)
            return raw if parsed is None else parsed

        typing = TypingService(fanout=fanout, access=access, clock=clock, tasks=tasks,
                               store=typing_store, timeout_ms=settings.typing_timeout_ms,
                               parse_user_id=user_id)
        presence = PresenceService(
            fanout=fanout, conversations=storage.conversations, users=storage.users, clock=clock,
            tasks=tasks, registry=presence_registry,
            grace_ms=settings.presence_grace_ms, ttl_ms=settings.presence_ttl_ms,
            parse_user_id=user_id, metrics=metrics, scope=settings.presence_scope,
        )
        sessions = SessionService(
            verifier=TokenVerifier(settings, clock),
            presence=presence,
            typing=typing,
            users=storage.users,
            fanout=fanout,
            clock=clock,
            tasks=tasks,
            event_limiter=RateLimiter(settings.rate_limit_events, clock),
            limits=SessionLimits(settings.auth_timeout_ms, settings.max_connections_per_user),
            admission=admission,
            errors=errors,
            main_site=main_site,
        )
        deadline_s = settings.db_timeout_ms / 1000  # a send's whole deadline
        live = LiveEvents(clock)
        feed = EventFeed(
            conversations=storage.conversations, events=storage.events, clock=clock,
            hold_s=settings.long_poll_timeout_ms / 1000,
            db_timeout_ms=settings.db_timeout_ms, max_polls_per_user=settings.max_polls_per_user,
            live=live, watch=fanout.watch,
        )
        server = ServerApiService(
            conversations=storage.conversations, fanout=fanout, access=access,
            presence=presence, typing=typing, feed=feed, clock=clock, tasks=tasks,
            messages=MessageService(
                messages=storage.messages, fanout=fanout,
                access=main_site_access(storage.conversations, clock),
                typing=typing, clock=clock, metrics=metrics, deadline_s=deadline_s,
            ),
            user_id_type=settings.user_id_type, max_members=settings.max_conversation_members,
        )
        rules = MemberRules(
            conversations=storage.conversations, clock=clock,
            max_members=settings.max_conversation_members,
            policy=settings.member_add_policy,
            creates_per_minute=settings.rate_limit_conversations,
        )
        roles = Roles(storage.conversations)
        notifier.subscribe(server.delivered)
        notifier.subscribe(live.delivered)
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
                conversations=storage.conversations, messages=storage.messages,
                reactions=storage.reactions, changes=storage.changes, events=storage.events,
                feed=feed, fanout=fanout, access=access, roles=roles, presence=presence,
                typing=typing, clock=clock,
                limits=ConversationLimits(
                    settings.max_rooms_per_socket, settings.presence_list_max,
                    settings.replay_max_messages,
                ),
            ),
            messages=MessageService(
                messages=storage.messages, fanout=fanout, access=access, typing=typing,
                clock=clock, metrics=metrics, deadline_s=deadline_s,
                limiter=RateLimiter(settings.rate_limit_messages, clock),
                extras=SendExtras(changes=storage.changes, conversations=storage.conversations,
                                  roles=roles),
            ),
            members=MemberAdminService(
                conversations=storage.conversations, server=server, access=access, roles=roles,
                rules=rules, fanout=fanout,
            ),
            changes=MessageChangeService(
                changes=storage.changes, fanout=fanout, access=access, roles=roles, clock=clock,
                limits=ChangeLimits(settings.message_edit_window_s,
                                    settings.max_pins_per_conversation),
            ),
            receipts=ReceiptService(messages=storage.messages, receipts=storage.receipts,
                                    fanout=fanout, access=access, clock=clock),
            reactions=ReactionService(changes=storage.changes, reactions=storage.reactions,
                                      fanout=fanout, access=access, clock=clock),
            errors=errors,
            access=access,
            fanout=fanout,
            retention=RetentionService(
                events=storage.events, messages=storage.messages, clock=clock, tasks=tasks,
                event_log_retention_s=settings.event_log_retention_s,
                message_retention_days=settings.message_retention_days,
                db_timeout_ms=settings.db_timeout_ms,
            ),
            feed=feed,
            server=server,
            inbox=InboxService(
                conversations=storage.conversations, messages=storage.messages,
                reactions=storage.reactions, summaries=storage.summaries, access=access,
                clock=clock, rules=rules, fanout=fanout,
            ),
            polls=LongPollService(feed=feed, live=live, presence=presence),
        )
