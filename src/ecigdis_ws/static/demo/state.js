// The demo page's state, kept in one place, and the small helpers every part uses.

export const $ = (selector) => document.querySelector(selector);

/** Everything the page shows, kept in one place. */
export const view = {
  me: null, // { userId, name }
  manager: null,
  active: null, // conversation id shown
  conversations: new Map(), // id -> { id, title, unread, messages: Map(id -> message), readers: Map(userId -> messageId), typing: Set, loaded }
  names: new Map(), // userId (as text) -> name
  online: new Map(), // userId (as text) -> { userId, name }
  pending: new Map(), // messageId (as text) -> { conversationId, text, status }
  reactions: new Map(), // message id -> Map(emoji -> Set(userId as text))
  authentications: 0, // sessions the server confirmed (a refreshed token adds one)
  delivered: [], // ids of the messages ChatManager delivered, in order (each should come once)
};

export const key = (userId) => String(userId);
export const isMe = (userId) => view.me !== null && key(userId) === key(view.me.userId);
export const nameOf = (userId) => view.names.get(key(userId)) || `user ${userId}`;

export function conversation(id) {
  let entry = view.conversations.get(id);
  if (!entry) {
    entry = { id, title: '', unread: 0, messages: new Map(), readers: new Map(), typing: new Set(), loaded: false, unreadHistory: false };
    view.conversations.set(id, entry);
  }
  return entry;
}

export function showError(where, error) {
  $(where).textContent = error ? `${error.code ? `${error.code}: ` : ''}${error.message || error}` : '';
}
