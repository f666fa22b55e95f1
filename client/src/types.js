// The public shapes of ChatManager: what it takes, resolves and emits. JSDoc only
// (nothing runs here); chat-manager.js re-exports each name, so the package's
// types/chat-manager.d.ts still declares them all.

/**
 * @typedef {number | string} UserId
 * @typedef {number | string} ClientMessageId
 *
 * @typedef {object} ChatMessage  A stored message (`message:new`).
 * @property {number} id                 the server's id, growing within a conversation
 * @property {ClientMessageId} messageId the sender's own id
 * @property {number} conversationId
 * @property {UserId} userId
 * @property {string} senderName
 * @property {string} text
 * @property {string} createdAt          ISO-8601 UTC with milliseconds
 * @property {ReactionCount[]} [reactions] the reactions on it when it was read from history
 *                                       (a REST page, a replay with `since`, the long-poll);
 *                                       absent on a live message, which has none yet. Later
 *                                       `reaction` events apply on top (set semantics per user).
 * @property {ReplyTo} [replyTo]         the message it answers, as that message is now (our own
 *                                       sent message, delivered from its ack, carries only `id`)
 * @property {UserId[]} [mentions]       whom it calls by name
 * @property {boolean} [mentionsEveryone] it calls the whole conversation
 * @property {string | null} [editedAt]  once edited (in replays and history; live: `messageUpdated`)
 * @property {number} [version]          once edited: 1 + the number of edits
 * @property {boolean} [deleted]         a tombstone: deleted, `text` is ""
 * @property {string} [deletedAt]
 * @property {UserId | null} [deletedBy] null: the main site deleted it
 *
 * @typedef {object} ReplyTo  The message a message answers (`replyTo` of `message:new`).
 * @property {number} id
 * @property {UserId | null} [userId]    its sender (null: it is gone with MESSAGE_RETENTION_DAYS)
 * @property {string} [senderName]
 * @property {string} [excerpt]          its first 120 characters; "" once deleted
 * @property {boolean} [deleted]
 *
 * @typedef {object} SendOptions  `send()`'s options.
 * @property {ClientMessageId} [messageId] our own id for it (default: a new UUID); a retry
 *                                       with the same one is stored once
 * @property {number} [replyTo]          the server id of the message of that conversation it answers
 * @property {UserId[]} [mentions]       members it calls by name
 * @property {boolean} [mentionsEveryone] it calls everyone (owners and admins only)
 *
 * @typedef {number | {messageId: ClientMessageId}} MessageRef  A message to edit or delete: its
 *   server id, or `{ messageId }` of a send of ours (still queued, or sent since the page loaded)
 *
 * @typedef {object} MessageUpdatedEvent  A message was edited (`message:updated`).
 * @property {number} id
 * @property {number} conversationId
 * @property {string} text               its text now
 * @property {string | null} editedAt
 * @property {number} version            apply an update only over an older version
 *
 * @typedef {MessageUpdatedEvent & {changed: boolean}} MessageEdit  What `editMessage()` resolves
 *   with; `changed: false`: it had that text already (no one was told)
 *
 * @typedef {object} MessageDeletedEvent  A message was deleted (`message:deleted`).
 * @property {number} id
 * @property {number} conversationId
 * @property {UserId | null} deletedBy   null: the main site deleted it
 * @property {string} deletedAt
 *
 * @typedef {object} MessageDeletion  What `deleteMessage()` resolves with.
 * @property {number | null} id          null: it was never sent, only taken out of the queue
 * @property {number} conversationId
 * @property {UserId | null} deletedBy
 * @property {string | null} deletedAt   null when it was deleted already, or never sent
 * @property {boolean} [alreadyDeleted]  it was deleted already (an earlier try, or someone else)
 *
 * @typedef {object} MessageVersions  What `messageVersions()` resolves with.
 * @property {number} id
 * @property {number} conversationId
 * @property {string} text               the text now
 * @property {number} version
 * @property {Array<{version: number, text: string, writtenAt: string, replacedAt: string}>} versions
 *                                       the texts edits replaced, oldest first
 *
 * @typedef {object} PinEvent  `message:pinned` (`messagePinned`) or `message:unpinned`
 *   (`messageUnpinned`, with `unpinnedBy` and `unpinnedAt` instead).
 * @property {number} id
 * @property {number} conversationId
 * @property {UserId | null} [pinnedBy]
 * @property {string} [pinnedAt]
 * @property {UserId | null} [unpinnedBy]
 * @property {string} [unpinnedAt]
 *
 * @typedef {object} PinResult  What `pinMessage()` / `unpinMessage()` resolve with.
 * @property {number} id
 * @property {number} conversationId
 * @property {boolean} pinned
 * @property {boolean} changed           false: it was pinned (unpinned) already
 *
 * @typedef {'owner' | 'admin' | 'member'} Role
 *
 * @typedef {object} MemberChange  What `addMember()`, `removeMember()` and `leaveConversation()`
 *   resolve with (`setRole()`: with `role` too).
 * @property {number} conversationId
 * @property {UserId} userId
 * @property {boolean} changed           false: they were a member already (add)
 * @property {Role} [role]
 *
 * @typedef {object} MemberAddedEvent  Someone became a member (`member:added`).
 * @property {number} conversationId
 * @property {UserId} userId
 * @property {UserId | null} addedBy     null: the main site
 *
 * @typedef {object} MemberRemovedEvent  Someone is a member no more (`member:removed`).
 * @property {number} conversationId
 * @property {UserId} userId
 * @property {UserId | null} removedBy   themselves when they left; null: the main site
 *
 * @typedef {object} MemberUpdatedEvent  A member's role changed (`member:updated`).
 * @property {number} conversationId
 * @property {UserId} userId
 * @property {Role} role
 * @property {UserId | null} updatedBy   null: the main site
 *
 * @typedef {object} ReactionCount  One emoji on a message, in the order of first use.
 * @property {string} emoji
 * @property {number} count
 * @property {UserId[]} userIds          who has it on, in the order they put it on
 *
 * @typedef {object} SendAck  What `send()` resolves with once the server stored the message.
 * @property {ClientMessageId} messageId
 * @property {'sent'} status
 * @property {number} id
 * @property {number} conversationId
 * @property {string} createdAt
 * @property {boolean} [duplicate]       true when an earlier attempt had stored it already
 *
 * @typedef {'queued' | 'sending' | 'sent' | 'failed' | 'cancelled'} OutgoingStatus  cancelled:
 *   deleted (`deleteMessage`) before it was ever sent
 *
 * @typedef {object} OutgoingEvent  A message of ours changing state (`outgoing` event).
 * @property {ClientMessageId} messageId
 * @property {number} conversationId
 * @property {string} text
 * @property {OutgoingStatus} status
 * @property {number} [id]               the server id, once sent
 * @property {ChatErrorInfo} [error]     why it failed, when failed
 *
 * @typedef {object} ChatErrorInfo
 * @property {string} code               UNAUTHENTICATED, AUTH_FAILED, TOKEN_EXPIRED, INVALID_PAYLOAD,
 *                                       FORBIDDEN, NOT_FOUND, CONFLICT, RATE_LIMITED, UNAVAILABLE,
 *                                       INTERNAL; or this client's own: OFFLINE (it could not reach
 *                                       the server), CLOSED, CANCELLED (deleted before it was sent)
 * @property {string} message
 * @property {string | null} [event]     the client event that failed
 *
 * @typedef {object} TypingEvent
 * @property {number} conversationId
 * @property {UserId} userId
 * @property {boolean} isTyping
 *
 * @typedef {object} ReadEvent  Someone read a conversation up to a message: live
 *   (`message:read-receipt`), or a member's read position as a join or a history page
 *   reported it (a position never moves back, so keep the highest).
 * @property {number} conversationId
 * @property {number} messageId
 * @property {UserId} userId
 * @property {string | null} readAt      null for a position older than the server's record of it
 *
 * @typedef {object} ReactionEvent
 * @property {number} conversationId
 * @property {number} messageId
 * @property {UserId} userId
 * @property {string} emoji
 * @property {'added' | 'removed'} action
 *
 * @typedef {object} PresenceEvent  `user:online` / `user:offline`.
 * @property {UserId} userId
 * @property {boolean} online
 * @property {string} [name]
 * @property {string} [lastSeen]
 *
 * @typedef {object} Member  A member of a conversation, as a join ack or a history page
 *   lists them (`members`, from a server that sends it).
 * @property {UserId} userId
 * @property {string | null} name        the name to show; null when the server has none
 * @property {string | null} role
 *
 * @typedef {object} MembersEvent  The members of a conversation, with their names: from a
 *   join ack or a history page that lists them.
 * @property {number} conversationId
 * @property {Member[]} members
 *
 * @typedef {object} MemberEvent  `user:joined` / `user:left` a conversation room.
 * @property {number} conversationId
 * @property {UserId} userId
 *
 * @typedef {object} ConversationAddedEvent  We became a member (`conversation:added`).
 * @property {number} conversationId
 * @property {string} title
 * @property {UserId[]} members           every member, us included
 * @property {UserId | null} addedBy      who created it with us in it; null: the main site added us
 *
 * @typedef {object} ConversationRemovedEvent  We are no longer a member (`conversation:removed`).
 * @property {number} conversationId
 * @property {UserId | null} removedBy    null: the main site removed us
 *
 * @typedef {object} ConversationUpdatedEvent  A member renamed a conversation (`conversation:updated`).
 * @property {number} conversationId
 * @property {string} title              the new title
 * @property {UserId} updatedBy           who renamed it
 *
 * @typedef {object} ConversationUpdate  What `updateConversation()` resolves with.
 * @property {number} conversationId
 * @property {string} title
 * @property {boolean} changed           false: it had that title already (no one was told)
 *
 * @typedef {object} JoinResult  What `join()` resolves with.
 * @property {number} conversationId
 * @property {UserId[]} onlineUserIds    empty over HTTP (ask requestPresence(conversationId) there)
 * @property {ReadEvent[]} reads         each member's read position (also emitted as `read`)
 * @property {Member[]} [members]        every member with their name, when the server lists
 *                                       them (also emitted as `members`)
 * @property {number[]} [pinned]        the pinned message ids, in the order they were pinned
 *                                       (socket joins; the conversation list has them too)
 *
 * @typedef {'idle' | 'connecting' | 'online' | 'fallback' | 'offline' | 'unauthorized' | 'closed'} ConnectionState
 *
 * @typedef {object} StateEvent
 * @property {ConnectionState} state     online: socket; fallback: REST + long-poll; offline: neither yet
 * @property {'websocket' | 'polling' | 'http' | null} transport
 *
 * @typedef {object} Identity
 * @property {UserId} userId
 * @property {string} name
 *
 * @typedef {object} ChatEvents  Event name → listener argument.
 * @property {StateEvent} state
 * @property {Identity} authenticated
 * @property {ChatMessage} message
 * @property {OutgoingEvent} outgoing
 * @property {TypingEvent} typing
 * @property {ReadEvent} read
 * @property {ReactionEvent} reaction
 * @property {PresenceEvent} presence
 * @property {MembersEvent} members  a join or a history page listed the members and their names
 * @property {MemberEvent} joined
 * @property {MemberEvent} left
 * @property {MemberEvent} removed  the main site removed a member (maybe us) from a conversation
 * @property {ConversationAddedEvent} conversationAdded  we became a member of a conversation
 * @property {ConversationRemovedEvent} conversationRemoved  we were removed from a conversation
 * @property {ConversationUpdatedEvent} conversationUpdated  a member renamed a conversation
 * @property {MessageUpdatedEvent} messageUpdated  a message was edited
 * @property {MessageDeletedEvent} messageDeleted  a message was deleted
 * @property {PinEvent} messagePinned
 * @property {PinEvent} messageUnpinned
 * @property {MemberAddedEvent} memberAdded
 * @property {MemberRemovedEvent} memberRemoved  (us too: then `conversationRemoved` follows)
 * @property {MemberUpdatedEvent} memberUpdated  a member's role changed
 * @property {{cursor: string | null, conversationId?: number}} resync  a cursor was older than the
 *                                       server keeps (or its changes more than a join replays):
 *                                       missed messages came from history, but edits, deletions
 *                                       and pins of messages shown already may be missing: reload
 *                                       them (`conversationId`: that conversation's join; without:
 *                                       the long-poll's, any conversation)
 * @property {ChatErrorInfo} error
 *
 * @typedef {object} ChatManagerOptions
 * @property {string} [wsServer]         the chat server, e.g. 'https://chat.example.com'
 *                                       (http/https/ws/wss); default: this page's origin
 * @property {string | boolean} [httpFallback] the REST API root; default
 *                                       `<wsServer as http(s)>/api/messenger`; false: no fallback
 * @property {string} [mainSiteUrl]      the portal; without `token`/`getToken`, tokens come from
 *                                       GET `<mainSiteUrl>/api/messenger/token` (`{ token }`,
 *                                       with the portal's cookies)
 * @property {string} [token]            a JWT to start with
 * @property {() => (string | Promise<string>)} [getToken] returns a fresh JWT; called at start
 *                                       without `token`, on TOKEN_EXPIRED and on a refused token
 * @property {number} [fallbackAfterErrors] socket connect errors in a row before falling back to
 *                                       HTTP (default 3)
 * @property {number} [fallbackAfterMs]  ...or this long without a socket connection (default 10000)
 * @property {number} [ackTimeoutMs]     an event unanswered this long is retried (default 10000)
 * @property {number} [typingThrottleMs] at most one typing:start per conversation this often
 *                                       (default 2000; the server's typing lasts 6000)
 * @property {number} [typingIdleMs]     typing:stop after this long without typing() (default 3000)
 * @property {number} [pollTimeoutMs]    a long-poll is abandoned after this long (default 35000;
 *                                       the server holds one up to 25 s)
 * @property {number} [retryDelayMs]     first retry delay of a failed HTTP call or send (default 500)
 * @property {number} [maxRetryDelayMs]  retry delays double up to this (default 8000)
 * @property {number} [reconnectDelayMs] first socket reconnect delay (default 1000; socket.io's
 *                                       reconnectionDelay)
 * @property {number} [maxReconnectDelayMs] reconnect delays double up to this (default 5000;
 *                                       socket.io's reconnectionDelayMax)
 * @property {number} [reconnectJitter]  every reconnect and retry delay varies by up to ± this
 *                                       share of itself, at random (default 0.5; above 0, below
 *                                       1; socket.io's randomizationFactor)
 * @property {Record<string, unknown>} [socketOptions] passed to socket.io-client's io(), e.g.
 *                                       { transports: ['websocket'], reconnectionDelayMax: 5000 }
 * @property {typeof fetch} [fetch]      fetch to use for HTTP (default globalThis.fetch)
 */

export {};
