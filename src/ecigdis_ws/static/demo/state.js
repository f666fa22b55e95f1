// The demo page's state, kept in one place, and the small helpers every part uses.

export const $ = (selector) => document.querySelector(selector);

/** Everything the page shows, kept in one place. */
export const view = {
  me: null, // { userId, name }
  manager: null,
  active: null, // conversation id shown
  conversations: new Map(), // id -> { id, title, unread, messages: Map(id -> message), readers: Map(userId -> messageId), typing: Set, loaded, older, members }
  names: new Map(), // userId (as text) -> name, from messages, presence and member lists
  online: new Map(), // userId (as text) -> { userId, name }
  pending: new Map(), // messageId (as text) -> { conversationId, text, status }
  reactions: new Map(), // message id -> Map(emoji -> Set(userId as text))
  authentications: 0, // sessions the server confirmed (a refreshed token adds one)
  delivered: [], // ids of the messages ChatManager delivered, in order (each should come once)
  presenceStale: false, // disconnected: the online list is only what we last knew
  draft: null, // the composer edits or answers a message: { kind: 'edit' | 'reply', conversationId, id }
};

export const key = (userId) => String(userId);
export const isMe = (userId) => view.me !== null && key(userId) === key(view.me.userId);
/** The name we learnt for a user, or null: an id is never shown as a name. */
export const knownName = (userId) => view.names.get(key(userId)) || null;
export const nameOf = (userId) => knownName(userId) || 'someone';

/** "Bob, Carol and 2 others"; "1 person" when no name is known. @param {Iterable<string>} userIds */
export function people(userIds) {
  const names = [];
  let unknown = 0;
  for (const userId of userIds) {
    const name = knownName(userId);
    if (name) names.push(name);
    else unknown += 1;
  }
  names.sort();
  if (unknown === 0) return names.join(', ');
  if (names.length === 0) return `${unknown} ${unknown === 1 ? 'person' : 'people'}`;
  return `${names.join(', ')} and ${unknown} other${unknown === 1 ? '' : 's'}`;
}

export function conversation(id) {
  let entry = view.conversations.get(id);
  if (!entry) {
    entry = {
      id, title: '', unread: 0, messages: new Map(), readers: new Map(), typing: new Set(), loaded: false, unreadHistory: false,
      // Older messages: 'more' (a page may lie before the first shown), 'loading', or
      // 'start' (the first message is shown).
      older: 'more',
      members: null, // Map(userId as text -> { userId, name, role }) once the server listed them
      pinned: [], // the pinned message ids, in the order they were pinned
      pinShown: 0, // the pinned bar shows pinned[pinned.length - 1 - pinShown]
    };
    view.conversations.set(id, entry);
  }
  return entry;
}

/** The member's role in a conversation ('owner', 'admin', 'member'), or null when not listed. */
export function roleIn(entry, userId) {
  const member = entry && entry.members ? entry.members.get(key(userId)) : null;
  return member ? member.role : null;
}

/** Owners and admins run a conversation: delete others' messages, pin, rename, read earlier versions. */
export function isModerator(entry) {
  const role = view.me ? roleIn(entry, view.me.userId) : null;
  return role === 'owner' || role === 'admin';
}

/** Either member of a conversation of two may pin and rename, as the server allows. */
export const isPair = (entry) => Boolean(entry && entry.members && entry.members.size === 2);

export function showError(where, error) {
  $(where).textContent = error ? `${error.code ? `${error.code}: ` : ''}${error.message || error}` : '';
}
