// The demo page: a small chat UI on ChatManager, served by the server itself.
//
// Query parameters (for trying things out, and for the browser tests):
//   ?name=Alice         sign in at once with this name
//   ?ttl=SECONDS        lifetime of the development tokens (getToken fetches new ones)
//   ?fallbackAfterErrors=N, ?ackTimeoutMs=MS, ?reconnectDelayMax=MS   ChatManager and
//                       socket.io-client options
import { ChatManager } from '/client/chat-manager.js';

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const REACTIONS = ['👍', '❤️', '😂'];

/** Everything the page shows, kept in one place. */
const view = {
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
window.demo = view; // for a look from the console (and the browser tests)

const key = (userId) => String(userId);
const isMe = (userId) => view.me !== null && key(userId) === key(view.me.userId);
const nameOf = (userId) => view.names.get(key(userId)) || `user ${userId}`;

function conversation(id) {
  let entry = view.conversations.get(id);
  if (!entry) {
    entry = { id, title: '', unread: 0, messages: new Map(), readers: new Map(), typing: new Set(), loaded: false, unreadHistory: false };
    view.conversations.set(id, entry);
  }
  return entry;
}

function showError(where, error) {
  $(where).textContent = error ? `${error.code ? `${error.code}: ` : ''}${error.message || error}` : '';
}

// -- signing in ------------------------------------------------------------------------

async function devToken(name) {
  const body = { name };
  if (params.get('ttl')) body.ttlS = Number(params.get('ttl'));
  const response = await fetch('/dev/token', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  if (response.status === 404) throw new Error('/dev/token is off here (NODE_ENV is not development): paste a token instead');
  const answer = await response.json();
  if (!response.ok) throw answer.error || new Error(`HTTP ${response.status}`);
  return answer;
}

$('#sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = $('#name').value.trim();
  if (!name) {
    // `required` lets a name of only spaces through; the server would refuse it too.
    showError('#sign-in-error', 'Type a name: one that is not only spaces.');
    $('#name').focus();
    return;
  }
  $('#sign-in').disabled = true;
  showError('#sign-in-error', null);
  try {
    const login = await devToken(name);
    await start({
      token: login.token,
      getToken: async () => (await devToken(name)).token,
      lobby: login.lobby,
    });
  } catch (error) {
    showError('#sign-in-error', error);
    $('#sign-in').disabled = false;
  }
});

$('#token-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const token = $('#token').value.trim();
  const conversationId = Number($('#token-conversation').value);
  try {
    await start({ token, lobby: conversationId ? { conversationId, title: '' } : null });
  } catch (error) {
    showError('#sign-in-error', error);
  }
});

// -- the session ------------------------------------------------------------------------

async function start({ token, getToken, lobby }) {
  const options = { wsServer: location.origin, token, getToken };
  if (params.get('fallbackAfterErrors')) options.fallbackAfterErrors = Number(params.get('fallbackAfterErrors'));
  if (params.get('ackTimeoutMs')) options.ackTimeoutMs = Number(params.get('ackTimeoutMs'));
  if (params.get('reconnectDelayMax')) {
    const max = Number(params.get('reconnectDelayMax'));
    options.reconnectDelayMs = Math.min(500, max);
    options.maxReconnectDelayMs = max;
  }
  const manager = new ChatManager(options);
  view.manager = manager;
  wire(manager);
  await manager.connect();
  view.me = manager.identity;
  view.names.set(key(view.me.userId), view.me.name);
  $('#whoami').textContent = `${view.me.name} (#${view.me.userId})`;
  $('#whoami').hidden = false;
  $('#sign-in-panel').hidden = true;
  $('#chat').hidden = false;

  // Listed once: from here on `conversationAdded` / `conversationRemoved` keep the list.
  await listConversations();
  if (lobby && lobby.conversationId) {
    const entry = conversation(lobby.conversationId);
    entry.title = entry.title || lobby.title;
  }
  renderConversations();
  await Promise.all([...view.conversations.keys()].map((id) => open(id)));
  const first = lobby && lobby.conversationId ? lobby.conversationId : [...view.conversations.keys()][0];
  if (first !== undefined) show(first);
  refreshPresence();
  $('#composer').focus();
}

/** My conversations from the REST API; null when this server has none. */
async function listConversations() {
  let listed;
  try {
    listed = await view.manager.conversations();
  } catch {
    return null; // no REST API here: the lobby (or the id typed in) is all we know
  }
  for (const item of listed) {
    const known = view.conversations.has(item.id);
    const entry = conversation(item.id);
    entry.title = item.title || entry.title;
    if (!known) entry.unread = item.unreadCount || 0;
  }
  return listed;
}

/** Someone started a conversation with us (or we did, in another tab), or the main site added us. */
function conversationAdded({ conversationId, title }) {
  const known = view.conversations.has(conversationId);
  const entry = conversation(conversationId);
  entry.title = title || entry.title;
  // New to us: nothing in it has been read, so its history counts as unread.
  if (!known) entry.unreadHistory = true;
  renderConversations();
  open(conversationId);
}

/** The main site removed us: the conversation leaves the list. */
function conversationRemoved({ conversationId }) {
  if (!view.conversations.delete(conversationId)) return;
  if (view.active === conversationId) {
    const next = [...view.conversations.keys()][0];
    if (next !== undefined) {
      show(next);
    } else {
      view.active = null;
      $('#conversation-title').textContent = '';
      $('#messages').replaceChildren();
    }
  }
  renderConversations();
}

/** Load a conversation's recent history (REST) and join its room, replaying what follows. */
async function open(id) {
  const entry = conversation(id);
  if (entry.loaded) return;
  entry.loaded = true;
  const manager = view.manager;
  try {
    const history = await manager.history(id, { limit: 50 });
    for (const message of history) addMessage(message, Boolean(entry.unreadHistory));
    // The join replays after the last message the history gave; with none (a new
    // conversation) from the start, or a message sent between the two is missed.
    await manager.join(id, history.length === 0 ? { since: 0 } : {});
  } catch (error) {
    // Without the REST API: replay the whole conversation over the socket.
    await manager.join(id, { since: 0 }).catch((joinError) => showError('#chat-error', joinError));
  }
  if (view.active === id) renderMessages();
}

function wire(manager) {
  manager.on('state', ({ state, transport }) => {
    const badge = $('#state');
    badge.className = `state state-${state}`;
    badge.dataset.state = state;
    badge.dataset.transport = transport || '';
    badge.textContent = state === 'online' ? `online (${transport})`
      : state === 'fallback' ? 'online over HTTP (fallback)'
        : state;
    if (state === 'online') refreshPresence();
    if (state === 'fallback') {
      // ChatManager asks GET /presence and the long-poll brings user:online/offline.
      view.online.clear();
      renderOnline();
    }
  });
  manager.on('authenticated', () => { view.authentications += 1; });
  manager.on('message', (message) => {
    view.delivered.push(message.id);
    addMessage(message, true);
  });
  manager.on('outgoing', (item) => {
    const id = key(item.messageId);
    if (item.status === 'sent') view.pending.delete(id);
    else view.pending.set(id, item);
    if (item.conversationId === view.active) renderMessages();
  });
  manager.on('typing', ({ conversationId, userId, isTyping }) => {
    if (isMe(userId)) return;
    const entry = conversation(conversationId);
    if (isTyping) entry.typing.add(key(userId));
    else entry.typing.delete(key(userId));
    if (conversationId === view.active) renderTyping();
  });
  manager.on('read', ({ conversationId, userId, messageId }) => {
    if (isMe(userId)) return;
    const entry = conversation(conversationId);
    const before = entry.readers.get(key(userId)) || 0;
    entry.readers.set(key(userId), Math.max(before, messageId));
    if (conversationId === view.active) renderReceipts();
  });
  manager.on('reaction', ({ messageId, userId, emoji, action }) => {
    applyReaction(messageId, userId, emoji, action);
  });
  manager.on('presence', ({ userId, name, online }) => {
    if (name) view.names.set(key(userId), name);
    if (online) view.online.set(key(userId), { userId, name: name || nameOf(userId) });
    else view.online.delete(key(userId));
    renderOnline();
  });
  manager.on('conversationAdded', conversationAdded);
  manager.on('conversationRemoved', conversationRemoved);
  manager.on('error', (error) => showError('#chat-error', error));
}

async function refreshPresence() {
  if (!view.manager || view.manager.state !== 'online') return;
  try {
    const { users } = await view.manager.requestPresence();
    view.online.clear();
    for (const user of users) {
      view.online.set(key(user.userId), user);
      view.names.set(key(user.userId), user.name);
    }
    renderOnline();
  } catch {
    // the socket went away meanwhile: the next `online` state asks again
  }
}

// -- messages ---------------------------------------------------------------------------

function addMessage(message, live) {
  const entry = conversation(message.conversationId);
  view.names.set(key(message.userId), message.senderName);
  if (entry.messages.has(message.id)) return;
  entry.messages.set(message.id, message);
  // From history (a REST page, a replay, the long-poll) a message brings its
  // reactions; live `reaction` events apply on top of them.
  if (Array.isArray(message.reactions)) seedReactions(message.id, message.reactions);
  view.pending.delete(key(message.messageId));
  if (message.conversationId === view.active) {
    renderMessages();
    markRead();
  } else if (live && !isMe(message.userId)) {
    entry.unread += 1;
    renderConversations();
  }
}

function markRead() {
  const entry = view.conversations.get(view.active);
  if (!entry || document.visibilityState === 'hidden') return;
  let last = 0;
  for (const message of entry.messages.values()) if (!isMe(message.userId) && message.id > last) last = message.id;
  if (last > 0 && last > (entry.readUpTo || 0)) {
    entry.readUpTo = last;
    view.manager.markRead(view.active, last).catch(() => {});
  }
}
document.addEventListener('visibilitychange', markRead);

function applyReaction(messageId, userId, emoji, action) {
  let byEmoji = view.reactions.get(messageId);
  if (!byEmoji) {
    byEmoji = new Map();
    view.reactions.set(messageId, byEmoji);
  }
  let users = byEmoji.get(emoji);
  if (!users) {
    users = new Set();
    byEmoji.set(emoji, users);
  }
  if (action === 'added') users.add(key(userId));
  else users.delete(key(userId));
  const element = document.querySelector(`#messages li[data-id="${messageId}"] .reactions`);
  if (element) renderReactions(element, messageId);
}

function seedReactions(messageId, reactions) {
  const byEmoji = new Map();
  for (const { emoji, userIds } of reactions) byEmoji.set(emoji, new Set(userIds.map(key)));
  view.reactions.set(messageId, byEmoji);
}

async function react(messageId, emoji) {
  try {
    const { action } = await view.manager.react(view.active, messageId, emoji);
    applyReaction(messageId, view.me.userId, emoji, action);
  } catch (error) {
    showError('#chat-error', error);
  }
}

// -- rendering --------------------------------------------------------------------------

function renderConversations() {
  const list = $('#conversations');
  list.replaceChildren();
  for (const entry of view.conversations.values()) {
    const item = document.createElement('li');
    item.dataset.conversationId = entry.id;
    item.classList.toggle('active', entry.id === view.active);
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = entry.title || `Conversation #${entry.id}`;
    const unread = document.createElement('span');
    unread.className = 'unread';
    unread.textContent = entry.unread > 0 ? String(entry.unread) : '';
    item.append(title, unread);
    item.addEventListener('click', () => show(entry.id));
    list.append(item);
  }
}

function renderOnline(note) {
  renderReceipts(); // a reader's name may have come with presence: "Seen by Bob", not "user 7"
  const list = $('#online');
  list.replaceChildren();
  $('#online-count').textContent = view.online.size ? `(${view.online.size})` : '';
  if (note) {
    const item = document.createElement('li');
    item.className = 'note';
    item.textContent = note;
    list.append(item);
    return;
  }
  for (const { userId, name } of [...view.online.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const item = document.createElement('li');
    item.dataset.userId = key(userId);
    item.textContent = isMe(userId) ? `${name} (you)` : name;
    if (!isMe(userId)) item.addEventListener('click', () => startWith(userId, name));
    list.append(item);
  }
}

async function startWith(userId, name) {
  const existing = [...view.conversations.values()].find((entry) => entry.title === `${view.me.name} & ${name}`);
  if (existing) return show(existing.id);
  try {
    const created = await view.manager.createConversation(`${view.me.name} & ${name}`, [userId]);
    conversation(created.id).title = created.title;
    renderConversations();
    await open(created.id);
    show(created.id);
  } catch (error) {
    showError('#chat-error', error);
  }
}

function show(id) {
  view.active = id;
  const entry = conversation(id);
  entry.unread = 0;
  $('#conversation-title').textContent = entry.title || `Conversation #${id}`;
  renderConversations();
  renderMessages();
  renderTyping();
  open(id);
  markRead();
}

function renderMessages() {
  const entry = view.conversations.get(view.active);
  const list = $('#messages');
  if (!entry) return;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren();
  const stored = [...entry.messages.values()].sort((a, b) => a.id - b.id);
  for (const message of stored) list.append(messageElement(message));
  for (const [messageId, item] of view.pending) {
    if (item.conversationId !== view.active) continue;
    list.append(messageElement({
      messageId, text: item.text, userId: view.me.userId, senderName: view.me.name,
    }, item.status));
  }
  renderReceipts();
  if (atBottom || stored.length < 20) list.scrollTop = list.scrollHeight;
}

function messageElement(message, status) {
  const item = document.createElement('li');
  item.className = 'message';
  item.classList.toggle('mine', isMe(message.userId));
  item.dataset.messageId = key(message.messageId);
  const meta = document.createElement('div');
  meta.className = 'meta';
  const sender = document.createElement('span');
  sender.className = 'sender';
  sender.textContent = message.senderName;
  const time = document.createElement('time');
  meta.append(sender, time);
  const text = document.createElement('div');
  text.className = 'text';
  text.textContent = message.text;
  item.append(meta, text);
  if (status) {
    item.classList.add(status === 'failed' ? 'failed' : 'pending');
    const note = document.createElement('span');
    note.className = 'status';
    note.textContent = status === 'failed' ? 'not sent' : status === 'sending' ? 'sending…' : 'queued (offline)';
    item.append(note);
    return item;
  }
  item.dataset.id = String(message.id);
  time.dateTime = message.createdAt;
  time.textContent = new Date(message.createdAt).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const row = document.createElement('div');
  row.className = 'row';
  const reactions = document.createElement('span');
  reactions.className = 'reactions';
  renderReactions(reactions, message.id);
  row.append(reactions);
  for (const emoji of REACTIONS) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'react';
    button.dataset.emoji = emoji;
    button.title = `react ${emoji}`;
    button.textContent = `+${emoji}`;
    button.addEventListener('click', () => react(message.id, emoji));
    row.append(button);
  }
  const seen = document.createElement('div');
  seen.className = 'seen-by';
  item.append(row, seen);
  return item;
}

function renderReactions(element, messageId) {
  element.replaceChildren();
  for (const [emoji, users] of view.reactions.get(messageId) || []) {
    if (users.size === 0) continue;
    const chip = document.createElement('span');
    chip.className = 'reaction';
    chip.classList.toggle('mine', view.me !== null && users.has(key(view.me.userId)));
    chip.dataset.emoji = emoji;
    chip.dataset.count = String(users.size);
    chip.title = [...users].map(nameOf).join(', ');
    chip.textContent = `${emoji} ${users.size}`;
    element.append(chip);
  }
}

/** "Seen by Bob" under the last message each reader has read. */
function renderReceipts() {
  const entry = view.conversations.get(view.active);
  if (!entry) return;
  const items = [...document.querySelectorAll('#messages li[data-id]')];
  for (const item of items) item.querySelector('.seen-by').textContent = '';
  const byMessage = new Map();
  for (const [userId, upTo] of entry.readers) {
    let target = null;
    for (const item of items) if (Number(item.dataset.id) <= upTo) target = item;
    if (!target) continue;
    if (!byMessage.has(target)) byMessage.set(target, []);
    byMessage.get(target).push(nameOf(userId));
  }
  for (const [item, names] of byMessage) item.querySelector('.seen-by').textContent = `Seen by ${names.sort().join(', ')}`;
}

function renderTyping() {
  const entry = view.conversations.get(view.active);
  const names = entry ? [...entry.typing].map(nameOf).sort() : [];
  $('#typing').textContent = names.length === 0 ? ''
    : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
}

// -- composing --------------------------------------------------------------------------

$('#composer').addEventListener('input', () => {
  if (view.active !== null && $('#composer').value) view.manager.typing(view.active);
});

$('#composer-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('#composer').value;
  if (!text.trim() || view.active === null) return;
  $('#composer').value = '';
  showError('#chat-error', null);
  view.manager.send(view.active, text).catch((error) => showError('#chat-error', error));
});

if (params.get('name')) {
  $('#name').value = params.get('name');
  $('#sign-in-form').requestSubmit();
}
