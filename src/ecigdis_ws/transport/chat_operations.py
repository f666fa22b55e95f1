"""Every client operation, each declared once (transport/operations.py): its socket
events, its REST route, who may call it, and its handler (validate → one service
method → the reply). docs/architecture.md walks through adding one."""

from __future__ import annotations

from typing import Any

from ecigdis_ws import events
from ecigdis_ws.domain import Actor, SendResult, UserId
from ecigdis_ws.errors import ChatError
from ecigdis_ws.services.event_feed import CursorPruned
from ecigdis_ws.transport import validation as v
from ecigdis_ws.transport.operations import Call, Operation, Reply, RestRoute, SocketEvent

USER_API = "/api/messenger"
SERVER_API = "/api/server"
# Messages per page: the default, and at most (the socket replays in pages of 500).
DEFAULT_PAGE = 50
MAX_PAGE = 500
CONVERSATION = USER_API + "/conversations/{conversationId}"
MESSAGE = CONVERSATION + "/messages/{messageId}"
SERVER_CONVERSATION = SERVER_API + "/conversations/{conversationId}"


def _created_unless_duplicate(reply: Reply) -> int:
    return 200 if reply.get("duplicate") else 201


def _sent(result: SendResult, client_id: int | str) -> Reply:
    return result.message.ack(result.duplicate, client_id)


# -- the socket's own: signing in, rooms ------------------------------------------------


async def authenticate(call: Call) -> Reply:
    assert call.sid is not None
    token = v.payload(call.data).get("token")
    identity = await call.chat.sessions.authenticate(call.sid, token)
    reply = {"userId": identity.user_id, "name": identity.name}
    await call.tell(events.AUTHENTICATED, reply)
    return reply


async def join(call: Call) -> Reply:
    conversation_id = v.conversation_id(call.data)
    since = v.since_id(call.data)
    cursor = v.cursor(call.data)
    joined = await call.chat.conversations.join(call.actor(), conversation_id, since, cursor)
    return joined.wire(conversation_id)


async def leave(call: Call) -> Reply:
    conversation_id = v.conversation_id(call.data)
    await call.chat.conversations.leave(call.actor(), conversation_id)
    return {"conversationId": conversation_id}


# -- both transports ----------------------------------------------------------------------


async def _rename(call: Call, actor: Actor | None) -> Reply:
    fields = v.payload(call.data)
    conversation_id = v.conversation_id(fields)
    title = v.new_title(fields)
    changed = await call.chat.conversations.rename(actor, conversation_id, title)
    return {"conversationId": conversation_id, "title": title, "changed": changed}


async def update_conversation(call: Call) -> Reply:
    """conversation:update (PATCH over REST): an admin renames the conversation."""
    return await _rename(call, call.actor())


async def server_update_conversation(call: Call) -> Reply:
    """The main site's rename (`updatedBy: null`), an operation of its own."""
    return await _rename(call, None)


def _member(call: Call) -> tuple[int, UserId]:
    fields = v.payload(call.data)
    return (v.conversation_id(fields),
            v.user_id(fields.get("userId"), call.chat.settings.user_id_type))


async def add_member_by_admin(call: Call) -> Reply:
    """member:add (POST .../members over REST): an owner or admin adds someone."""
    conversation_id, user_id = _member(call)
    changed = await call.chat.members.add(call.actor(), conversation_id, user_id)
    return {"conversationId": conversation_id, "userId": user_id, "changed": changed}


async def remove_member_or_leave(call: Call) -> Reply:
    """member:remove (DELETE .../members/{userId}): leave for good, or an admin
    removes someone."""
    conversation_id, user_id = _member(call)
    changed = await call.chat.members.remove(call.actor(), conversation_id, user_id)
    return {"conversationId": conversation_id, "userId": user_id, "changed": changed}


async def _set_role(call: Call, actor: Actor | None) -> Reply:
    conversation_id, user_id = _member(call)
    role = v.role(v.payload(call.data))
    changed = await call.chat.members.set_role(actor, conversation_id, user_id, role)
    return {"conversationId": conversation_id, "userId": user_id, "role": role,
            "changed": changed}


async def set_role(call: Call) -> Reply:
    """member:role (PATCH .../members/{userId})."""
    return await _set_role(call, call.actor())


async def server_set_role(call: Call) -> Reply:
    """The main site sets any role (`updatedBy: null`)."""
    return await _set_role(call, None)


async def send(call: Call) -> Reply:
    fields = v.payload(call.data)
    settings = call.chat.settings
    conversation_id = v.conversation_id(fields)
    client_id, text = v.outgoing_message(fields, settings.max_message_length)
    reply_to = v.positive_id(fields, "replyTo", required=False)
    mentions = v.mentions(fields, settings.user_id_type, settings.max_mentions)
    everyone = v.optional_flag(fields, "mentionsEveryone")
    result = await call.chat.messages.post(call.actor(), conversation_id, text, client_id,
                                           reply_to, mentions, everyone)
    ack = _sent(result, client_id)
    await call.tell(events.MESSAGE_ACK, ack)
    return ack


async def edit(call: Call) -> Reply:
    """message:edit (PATCH over REST): the sender, within MESSAGE_EDIT_WINDOW_S."""
    fields = v.payload(call.data)
    conversation_id = v.conversation_id(fields)
    text = v.text(fields, call.chat.settings.max_message_length)
    edited = await call.chat.changes.edit(call.actor(), conversation_id,
                                          _target(call, fields), text)
    return edited.wire()


def _target(call: Call, fields: dict[str, Any]) -> int:
    """The message acted on: over REST the path's `{messageId}` alone (a body's
    `id` must not redirect a PATCH to another message than its URL names), on
    the socket the payload's `id`."""
    return v.target_message_id(fields, from_path=call.transport == "rest")


async def _delete(call: Call, actor: Actor | None) -> Reply:
    fields = v.payload(call.data)
    conversation_id = v.conversation_id(fields)
    return await call.chat.changes.delete(actor, conversation_id, _target(call, fields))


async def delete(call: Call) -> Reply:
    """message:delete (DELETE over REST): the sender, an owner or admin."""
    return await _delete(call, call.actor())


async def server_delete(call: Call) -> Reply:
    """The server API's moderation (`deletedBy: null`): its own operation, so that
    no user's call can ever be taken for it."""
    return await _delete(call, None)


async def _versions(call: Call, actor: Actor | None) -> Reply:
    fields = v.payload(call.data)
    conversation_id = v.conversation_id(fields)
    message, earlier = await call.chat.changes.versions(actor, conversation_id,
                                                        _target(call, fields))
    return {"id": message.id, "conversationId": conversation_id, "text": message.text,
            "version": message.version, "versions": [version.wire() for version in earlier]}


async def versions(call: Call) -> Reply:
    """message:versions (GET over REST): the texts an edit replaced, for owners and
    admins."""
    return await _versions(call, call.actor())


async def server_versions(call: Call) -> Reply:
    """The server API's read of a message's earlier versions, for disputes."""
    return await _versions(call, None)


async def _pin(call: Call, pinned: bool) -> Reply:
    fields = v.payload(call.data)
    conversation_id = v.conversation_id(fields)
    message_id = _target(call, fields)
    changed = await call.chat.changes.pin(call.actor(), conversation_id, message_id, pinned)
    return {"id": message_id, "conversationId": conversation_id, "pinned": pinned,
            "changed": changed}


async def pin(call: Call) -> Reply:
    return await _pin(call, pinned=True)


async def unpin(call: Call) -> Reply:
    return await _pin(call, pinned=False)


async def send_failed(call: Call, error: ChatError) -> None:
    """The socket's `message:ack` "failed", echoing the client's id when it is one."""
    message_id = call.data.get("messageId") if isinstance(call.data, dict) else None
    if isinstance(message_id, bool) or not isinstance(
        message_id, str | int
    ) or not v.echoable_message_id(message_id):
        message_id = None
    await call.tell(events.MESSAGE_ACK,
                    {"messageId": message_id, "status": "failed", "error": error.as_dict()})


async def mark_read(call: Call) -> Reply:
    fields = v.payload(call.data)
    conversation_id = v.conversation_id(fields)
    message_id = v.positive_id(fields, "messageId")
    assert message_id is not None
    advanced = await call.chat.receipts.mark_read(call.actor(), conversation_id, message_id)
    return {"advanced": advanced}


async def react(call: Call) -> Reply:
    fields = v.payload(call.data)
    conversation_id = v.conversation_id(fields)
    message_id = v.positive_id(fields, "messageId")
    assert message_id is not None
    emoji = v.emoji(fields)
    action = await call.chat.reactions.toggle(call.actor(), conversation_id, message_id, emoji)
    return {"action": action}


async def typing(call: Call) -> Reply:
    """typing:start / typing:stop, or REST's `isTyping`: the same membership rule and
    TYPING_TIMEOUT_MS end; the rate is the caller's event bucket (RATE_LIMIT_EVENTS
    per connection on the socket, per user over REST)."""
    fields = v.payload(call.data)
    conversation_id = v.conversation_id(fields)
    is_typing = v.flag(fields, "isTyping")
    if is_typing:
        await call.chat.typing.start(call.actor(), conversation_id)
    else:
        await call.chat.typing.stop(call.actor(), conversation_id)
    if call.transport == "socket":  # (the Node server's ack: the conversation alone)
        return {"conversationId": conversation_id}
    return {"conversationId": conversation_id, "isTyping": is_typing}


async def presence(call: Call) -> Reply:
    """The online users the caller may see (everyone, or under
    PRESENCE_SCOPE=contacts the caller and those sharing a conversation with them),
    or the online members of `conversationId`, at most PRESENCE_LIST_MAX. Answered
    once: in the reply when the caller reads it, else as the `presence:list` event
    (the Node server sent both, twice the bytes)."""
    conversation_id = v.optional_conversation_id(call.data)
    listing = (await call.chat.conversations.presence_list(
        call.actor(), conversation_id
    )).wire()
    if not call.ack_wanted:
        await call.tell(events.PRESENCE_LIST, listing)
    return listing


# -- REST only: the conversation list, history, the long-poll -----------------------------


async def list_conversations(call: Call) -> Reply:
    conversations = await call.chat.inbox.conversations(call.actor().user_id)
    return {"conversations": [c.wire() for c in conversations]}


async def create_conversation(call: Call) -> Reply:
    fields = v.payload(call.data)
    title = v.title(fields)
    member_ids = v.member_ids(fields, call.chat.settings.user_id_type)
    created = await call.chat.inbox.create(call.actor().user_id, title, member_ids)
    return created.wire()


async def list_messages(call: Call) -> Reply:
    fields = v.payload(call.data)
    page = await call.chat.inbox.messages(
        call.actor().user_id, v.conversation_id(fields), fields.get("since"),
        fields.get("before"), fields.get("limit") or DEFAULT_PAGE,
    )
    return page.wire()


async def poll(call: Call) -> Reply:
    fields = v.payload(call.data)
    assert call.identity is not None
    try:
        answer = await call.chat.polls.poll(call.identity, fields.get("cursor"),
                                            fields.get("live"))
    except CursorPruned as pruned:
        # docs/protocol.md, "Retention": catch up from history, poll on from here.
        return {"cursor": str(pruned.position), "events": [], "resync": True}
    return answer.wire()


# -- the main site's server API ----------------------------------------------------------


async def post_system_message(call: Call) -> Reply:
    fields = v.payload(call.data)
    settings = call.chat.settings
    conversation_id = v.conversation_id(fields)
    client_id, text = v.outgoing_message(fields, settings.max_message_length)
    raw_user = fields.get("userId")
    user_id = None if raw_user is None else v.user_id(raw_user, settings.user_id_type)
    name = v.sender_name(fields)
    result = await call.chat.server.post_message(conversation_id, client_id, text, user_id, name)
    return _sent(result, client_id)


async def _membership(call: Call, added: bool) -> Reply:
    """The server API's add (`userId` in the body) or remove (in the path)."""
    fields = v.payload(call.data)
    conversation_id = v.conversation_id(fields)
    user_id = v.user_id(fields.get("userId"), call.chat.settings.user_id_type)
    change = call.chat.server.add_member if added else call.chat.server.remove_member
    changed = await change(conversation_id, user_id)
    return {"conversationId": conversation_id, "userId": user_id, "changed": changed}


async def add_member(call: Call) -> Reply:
    return await _membership(call, added=True)


async def remove_member(call: Call) -> Reply:
    return await _membership(call, added=False)


OPERATIONS: tuple[Operation, ...] = (
    Operation(events.AUTHENTICATE, authenticate, caller="anyone",
              events=(SocketEvent(events.AUTHENTICATE),)),
    Operation(events.CONVERSATION_JOIN, join, events=(SocketEvent(events.CONVERSATION_JOIN),)),
    Operation(events.CONVERSATION_LEAVE, leave,
              events=(SocketEvent(events.CONVERSATION_LEAVE),)),
    Operation(events.CONVERSATION_UPDATE, update_conversation,
              events=(SocketEvent(events.CONVERSATION_UPDATE),),
              rest=RestRoute("PATCH", CONVERSATION, body=True)),
    Operation(events.MEMBER_ADD, add_member_by_admin, events=(SocketEvent(events.MEMBER_ADD),),
              rest=RestRoute("POST", CONVERSATION + "/members", body=True)),
    Operation(events.MEMBER_REMOVE, remove_member_or_leave,
              events=(SocketEvent(events.MEMBER_REMOVE),),
              rest=RestRoute("DELETE", CONVERSATION + "/members/{userId}")),
    Operation(events.MEMBER_ROLE, set_role, events=(SocketEvent(events.MEMBER_ROLE),),
              rest=RestRoute("PATCH", CONVERSATION + "/members/{userId}", body=True)),
    Operation(events.MESSAGE_SEND, send, events=(SocketEvent(events.MESSAGE_SEND),),
              rest=RestRoute("POST", CONVERSATION + "/messages",
                             status=_created_unless_duplicate, body=True),
              on_socket_failure=send_failed),
    Operation(events.TYPING_START, typing,
              events=(SocketEvent(events.TYPING_START, {"isTyping": True}),
                      SocketEvent(events.TYPING_STOP, {"isTyping": False})),
              rest=RestRoute("POST", CONVERSATION + "/typing", body=True)),
    Operation(events.MESSAGE_EDIT, edit, events=(SocketEvent(events.MESSAGE_EDIT),),
              rest=RestRoute("PATCH", MESSAGE, body=True)),
    Operation(events.MESSAGE_DELETE, delete, events=(SocketEvent(events.MESSAGE_DELETE),),
              rest=RestRoute("DELETE", MESSAGE)),
    Operation(events.MESSAGE_VERSIONS, versions, events=(SocketEvent(events.MESSAGE_VERSIONS),),
              rest=RestRoute("GET", MESSAGE + "/versions")),
    Operation(events.MESSAGE_PIN, pin, events=(SocketEvent(events.MESSAGE_PIN),),
              rest=RestRoute("PUT", MESSAGE + "/pin")),
    Operation(events.MESSAGE_UNPIN, unpin, events=(SocketEvent(events.MESSAGE_UNPIN),),
              rest=RestRoute("DELETE", MESSAGE + "/pin")),
    Operation(events.MESSAGE_READ, mark_read, events=(SocketEvent(events.MESSAGE_READ),),
              rest=RestRoute("POST", CONVERSATION + "/read", body=True)),
    Operation(events.MESSAGE_REACT, react, events=(SocketEvent(events.MESSAGE_REACT),),
              rest=RestRoute("POST", CONVERSATION + "/messages/{messageId}/reactions",
                             body=True)),
    Operation(events.PRESENCE_REQUEST, presence, events=(SocketEvent(events.PRESENCE_REQUEST),),
              rest=RestRoute("GET", USER_API + "/presence",
                             query={"conversationId": (1, v.MAX_ID)})),
    Operation("conversations:list", list_conversations,
              rest=RestRoute("GET", USER_API + "/conversations")),
    Operation("conversations:create", create_conversation,
              rest=RestRoute("POST", USER_API + "/conversations", status=201, body=True)),
    Operation("messages:list", list_messages,
              rest=RestRoute("GET", CONVERSATION + "/messages", query={
                  "since": (0, v.MAX_ID), "before": (1, v.MAX_ID), "limit": (1, MAX_PAGE)})),
    Operation("poll", poll, rest=RestRoute("GET", USER_API + "/poll",
                                           query={"cursor": (0, v.MAX_ID), "live": None})),
    Operation("server:message", post_system_message, caller="server",
              rest=RestRoute("POST", SERVER_API + "/conversations/{conversationId}/messages",
                             status=_created_unless_duplicate, body=True)),
    Operation("server:update-conversation", server_update_conversation, caller="server",
              rest=RestRoute("PATCH", SERVER_CONVERSATION, body=True)),
    Operation("server:set-role", server_set_role, caller="server",
              rest=RestRoute("PATCH", SERVER_CONVERSATION + "/members/{userId}", body=True)),
    Operation("server:delete-message", server_delete, caller="server",
              rest=RestRoute("DELETE", SERVER_CONVERSATION + "/messages/{messageId}")),
    Operation("server:message-versions", server_versions, caller="server",
              rest=RestRoute("GET", SERVER_CONVERSATION + "/messages/{messageId}/versions")),
    Operation("server:add-member", add_member, caller="server",
              rest=RestRoute("POST", SERVER_API + "/conversations/{conversationId}/members",
                             body=True)),
    Operation("server:remove-member", remove_member, caller="server",
              rest=RestRoute("DELETE",
                             SERVER_API + "/conversations/{conversationId}/members/{userId}")),
)
