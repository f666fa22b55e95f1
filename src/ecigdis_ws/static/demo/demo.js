// The demo page: a small chat UI on ChatManager, served by the server itself.
//
// Query parameters (for trying things out, and for the browser tests):
//   ?name=Alice         sign in at once with this name
//   ?ttl=SECONDS        lifetime of the development tokens (getToken fetches new ones)
//   ?fallbackAfterErrors=N, ?ackTimeoutMs=MS, ?reconnectDelayMax=MS   ChatManager and
//                       socket.io-client options
import { ChatManager } from '/client/chat-manager.js';
import { $, conversation, isMe, key, nameOf, showError, view } from './state.js';
import './actions.js';
import { applyDelete, applyEdit, applyPin, completeReply, renderPinned, setPinned } from './changes.js';
import { conversationShown } from './composer.js';
import { fillList, keep, PAGE } from './history.js';
import { onRename, renderMembers } from './members.js';
import {
  applyReaction, clearMessages, insertMessage, placeReceipt, renameReaders, renderMessages, showHistoryEdge, showOutgoing,
} from './messages.js';

const params = new URLSearchParams(location.search);
window.demo = view; // for a look from the console (and the browser tests)

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
    showSignInError(error);
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
    showSignInError(error);
  }
});

/** Why signing in failed; for a refused token, the reason the server gave. */
function showSignInError(error) {
  if (error && (error.code === 'AUTH_FAILED' || error.code === 'TOKEN_EXPIRED')) {
    $('#sign-in-error').textContent = `The server refused the sign-in: ${error.message} (${error.code})`;
  } else {
    showError('#sign-in-error', error);
  }
}

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
  try {
    await manager.connect();
  } catch (error) {
    // Refused: this manager is done with (a new sign-in makes a new one).
    view.manager = null;
    manager.close();
    throw error;
  }
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
    if (Array.isArray(item.pinned)) setPinned(entry, item.pinned);
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
      clearMessages();
      renderMembers();
      renderPinned();
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
    const history = await manager.history(id, { limit: PAGE });
    // A full page: older ones may lie before it (scrolling up loads them).
    entry.older = history.length < PAGE ? 'start' : 'more';
    for (const message of history) addMessage(message, Boolean(entry.unreadHistory));
    if (view.active === id) {
      showHistoryEdge(entry);
      fillList();
    }
    // The join replays after the last message the history gave; with none (a new
    // conversation) from the start, or a message sent between the two is missed.
    const joined = await manager.join(id, history.length === 0 ? { since: 0 } : {});
    if (Array.isArray(joined.pinned)) setPinned(entry, joined.pinned);
  } catch (error) {
    // Without the REST API: replay the whole conversation over the socket.
    entry.older = 'start';
    if (view.active === id) showHistoryEdge(entry);
    await manager.join(id, { since: 0 }).catch((joinError) => showError('#chat-error', joinError));
  }
}

function wire(manager) {
  manager.on('state', ({ state, transport }) => {
    if (view.manager !== manager) return; // a refused sign-in's manager, closed
    const badge = $('#state');
    badge.className = `state state-${state}`;
    badge.dataset.state = state;
    badge.dataset.transport = transport || '';
    badge.textContent = state === 'online' ? `online (${transport})`
      : state === 'fallback' ? 'online over HTTP (fallback)'
        : state;
    if (state === 'online') {
      refreshPresence(); // the list is current again once it answers
    } else if (state === 'fallback') {
      // ChatManager asks GET /presence and the long-poll brings user:online/offline.
      view.online.clear();
      view.presenceStale = false;
      renderOnline();
    } else if (view.me) {
      // Disconnected: who was online is only what we last knew, and shows so.
      view.presenceStale = true;
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
    if (item.conversationId === view.active) showOutgoing(id, item);
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
    if (conversationId === view.active) placeReceipt(entry, key(userId));
  });
  manager.on('reaction', ({ messageId, userId, emoji, action }) => {
    applyReaction(messageId, userId, emoji, action);
  });
  manager.on('members', ({ conversationId, members }) => {
    // From a server that lists a conversation's members with its join and history.
    const entry = view.conversations.get(conversationId);
    if (entry) entry.members = new Map(members.map((member) => [key(member.userId), member]));
    for (const member of members) if (member.name) view.names.set(key(member.userId), member.name);
    renameReaders();
    if (conversationId === view.active) renderMembers();
  });
  manager.on('memberAdded', ({ conversationId, userId }) => changeMember(conversationId, userId, (members) => {
    if (!members.has(key(userId))) members.set(key(userId), { userId, name: view.names.get(key(userId)) || '', role: 'member' });
  }));
  manager.on('memberRemoved', ({ conversationId, userId }) => changeMember(conversationId, userId, (members) => {
    members.delete(key(userId));
  }));
  manager.on('memberUpdated', ({ conversationId, userId, role }) => changeMember(conversationId, userId, (members) => {
    const member = members.get(key(userId));
    if (member) members.set(key(userId), { ...member, role });
  }));
  manager.on('messageUpdated', applyEdit);
  manager.on('messageDeleted', applyDelete);
  manager.on('messagePinned', (pin) => applyPin(pin, true));
  manager.on('messageUnpinned', (pin) => applyPin(pin, false));
  manager.on('presence', ({ userId, name, online }) => {
    if (name) view.names.set(key(userId), name);
    if (online) view.online.set(key(userId), { userId, name: name || nameOf(userId) });
    else view.online.delete(key(userId));
    renderOnline();
  });
  manager.on('conversationAdded', conversationAdded);
  manager.on('conversationRemoved', conversationRemoved);
  manager.on('conversationUpdated', renamed);
  manager.on('error', (error) => showError('#chat-error', error));
}

/** A conversation was renamed: by someone else (`conversationUpdated`), or by us. */
function renamed({ conversationId, title }) {
  const entry = view.conversations.get(conversationId);
  if (!entry) return;
  entry.title = title;
  renderConversations();
  if (view.active === conversationId) $('#conversation-title').textContent = title;
}
onRename(renamed);

/** A member event of a conversation whose members we have: the list changed, its tools with it. */
function changeMember(conversationId, userId, change) {
  const entry = view.conversations.get(conversationId);
  if (!entry || !entry.members) return;
  change(entry.members);
  // (our own role decides which message tools show: the CSS reads what renderMembers sets)
  if (conversationId === view.active) renderMembers();
}

async function refreshPresence() {
  if (!view.manager || view.manager.state !== 'online') return;
  try {
    const { users } = await view.manager.requestPresence();
    view.online.clear();
    view.presenceStale = false;
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
  if (message.senderName) view.names.set(key(message.userId), message.senderName);
  if (entry.messages.has(message.id)) return;
  completeReply(entry, message);
  keep(entry, message);
  view.pending.delete(key(message.messageId));
  if (message.conversationId === view.active) {
    insertMessage(entry, message);
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

function renderOnline() {
  renameReaders(); // a reader's name may have come with presence: "Seen by Bob", not "1 person"
  renderMembers(); // and a member's, added since the join without one
  const list = $('#online');
  list.replaceChildren();
  // While disconnected the list is what we last knew: greyed, and saying so.
  list.classList.toggle('stale', view.presenceStale);
  $('#online-count').textContent = view.presenceStale ? '(last known)' : view.online.size ? `(${view.online.size})` : '';
  if (view.presenceStale) {
    const note = document.createElement('li');
    note.className = 'note';
    note.textContent = view.manager && view.manager.state !== 'unauthorized' && view.manager.state !== 'closed'
      ? 'offline — reconnecting…' : 'offline';
    list.append(note);
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
  renderMembers();
  renderMessages();
  renderPinned();
  renderTyping();
  conversationShown();
  open(id);
  markRead();
  if (entry.loaded) fillList();
}
function renderTyping() {
  const entry = view.conversations.get(view.active);
  const names = entry ? [...entry.typing].map(nameOf).sort() : [];
  $('#typing').textContent = names.length === 0 ? ''
    : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
}

if (params.get('name')) {
  $('#name').value = params.get('name');
  $('#sign-in-form').requestSubmit();
}
