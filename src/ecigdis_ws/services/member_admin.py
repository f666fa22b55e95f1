"""Conversations their members run (docs/protocol.md, Roles): owners and admins add
and remove members and set roles; any member leaves for good.

The rules, as Matrix power levels and Rocket.Chat/Mattermost channel roles have
them, kept to three roles:
- an owner or admin adds members within MEMBER_ADD_POLICY and
  MAX_CONVERSATION_MEMBERS, and removes members; only an owner removes an admin or
  another owner;
- an owner or admin makes a member an admin or an admin a member; only an owner
  makes or unmakes owners; the last owner cannot step down (CONFLICT), but may
  leave: the role goes to the longest-standing admin, else member;
- a member removing themselves leaves the conversation for good: the others hear
  `member:removed`, their own sockets `conversation:removed`.
The effects (the event log, `member:added` / `member:removed`, the user's
`conversation:added` / `conversation:removed`, sockets leaving the room on every
node) are the server API's, which does the same for the main site.
"""

from __future__ import annotations

from ecigdis_ws import events
from ecigdis_ws.domain import Actor, Role, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.base import Fanout, conversation_room
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.member_rules import MemberRules
from ecigdis_ws.services.roles import RUNNING_ROLES, Roles
from ecigdis_ws.services.server_api import ServerApiService
from ecigdis_ws.storage.base import ConversationRecords, LastOwner


class MemberAdminService:
    def __init__(
        self,
        *,
        conversations: ConversationRecords,
        server: ServerApiService,
        access: AccessPolicy,
        roles: Roles,
        rules: MemberRules,
        fanout: Fanout,
    ) -> None:
        self._conversations = conversations
        self._server = server
        self._access = access
        self._roles = roles
        self._rules = rules
        self._fanout = fanout

    async def add(self, actor: Actor, conversation_id: int, user_id: UserId) -> bool:
        """member:add: True when the user was not a member."""
        await self._access.require_member(conversation_id, actor.user_id)
        await self._roles.require_admin(conversation_id, actor.user_id, "add members")
        await self._rules.check_add(actor.user_id, user_id)
        return await self._server.add_member(conversation_id, user_id, actor.user_id)

    async def remove(self, actor: Actor, conversation_id: int, user_id: UserId) -> bool:
        """member:remove: a member leaving for good (themselves), or an owner or
        admin removing someone; True when they were a member."""
        await self._access.require_member(conversation_id, actor.user_id)
        leaving = str(user_id) == str(actor.user_id)
        target = await self._roles.role(conversation_id, user_id)
        if target is None:
            raise ChatError(ErrorCode.NOT_FOUND, "no such member of this conversation")
        if not leaving:
            mine = await self._roles.role(conversation_id, actor.user_id)
            if mine not in RUNNING_ROLES:
                raise ChatError(ErrorCode.FORBIDDEN,
                                "only the conversation's admins may remove members")
            if target in RUNNING_ROLES and mine != "owner":
                raise ChatError(ErrorCode.FORBIDDEN, "only an owner may remove an admin or owner")
        owners = await self._owners(conversation_id) if target == "owner" else set()
        removed = await self._server.remove_member(conversation_id, user_id, actor.user_id)
        if target == "owner":
            for heir in await self._owners(conversation_id) - owners:
                await self._tell_role(conversation_id, heir, "owner", actor.user_id)
        return removed

    async def set_role(
        self, actor: Actor | None, conversation_id: int, user_id: UserId, role: Role
    ) -> bool:
        """member:role (actor None: the server API, which may set any role)."""
        if actor is not None:
            await self._access.require_member(conversation_id, actor.user_id)
        target = await self._roles.role(conversation_id, user_id)
        if target is None:
            raise ChatError(ErrorCode.NOT_FOUND, "no such member of this conversation")
        if actor is not None:
            mine = await self._roles.role(conversation_id, actor.user_id)
            if mine not in RUNNING_ROLES:
                raise ChatError(ErrorCode.FORBIDDEN, "only the conversation's admins may set roles")
            if "owner" in (role, target) and mine != "owner":
                raise ChatError(ErrorCode.FORBIDDEN, "only an owner may make or unmake owners")
        try:
            changed = await self._conversations.set_role(conversation_id, user_id, role)
        except LastOwner as last:
            raise ChatError(ErrorCode.CONFLICT, str(last)) from None
        if changed:
            await self._tell_role(conversation_id, user_id, role,
                                  None if actor is None else actor.user_id)
        return changed

    async def _owners(self, conversation_id: int) -> set[UserId]:
        return {member.user_id for member in await self._conversations.members(conversation_id)
                if member.role == "owner"}

    async def _tell_role(
        self, conversation_id: int, user_id: UserId, role: Role, by: UserId | None
    ) -> None:
        await self._fanout.emit(
            events.MEMBER_UPDATED,
            {"conversationId": conversation_id, "userId": user_id, "role": role,
             "updatedBy": by},
            room=conversation_room(conversation_id),
        )
