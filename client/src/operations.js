// Every operation the client asks of the server, declared once: its socket event and
// its REST form. The transports read these declarations (SocketTransport emits the
// event, HttpTransport builds the request), so an operation is one entry here, plus
// a small public method on ChatManager when the page calls it.
//
// What `call(name, payload)` resolves with is the same on both transports: the
// socket's acknowledgement without `ok` (docs/protocol.md, "Client → server
// events"), or the REST answer in that shape (`http.reply` where it differs).

import { isObject } from './util.js';

/** @typedef {import('./types.js').SendAck} SendAck */

/**
 * @typedef {object} HttpForm  The REST request of an operation (docs/openapi.yaml).
 * @property {'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'} method
 * @property {string} path          below the API root; `{field}` is that payload field
 * @property {string[]} [query]     payload fields sent in the query string, those given
 * @property {string[]} [body]      payload fields sent as the JSON body, those given
 * @property {(answer: any, payload: any) => any} [reply]  the answer in the ack's shape
 *
 * @typedef {object} Operation
 * @property {string | ((payload: any) => string)} [event]  the socket event; absent: REST only
 * @property {string[]} [fields]    payload fields the socket event carries, those given
 *                                  (default: the whole payload)
 * @property {boolean} [noAck]      emitted without asking for an acknowledgement
 * @property {HttpForm} [http]      absent: socket only
 */

// What a send may carry besides its text (docs/protocol.md, "Replies and mentions").
const SEND_OPTIONS = ['replyTo', 'mentions', 'mentionsEveryone'];
// The REST paths of one message (its server id, `id` on the socket) and one member.
const MESSAGE = '/conversations/{conversationId}/messages/{id}';
const MEMBER = '/conversations/{conversationId}/members/{userId}';

/** @type {Readonly<Record<string, Operation>>} */
export const OPERATIONS = Object.freeze({
  // -- over the socket, or REST on the fallback ---------------------------------------
  'message:send': {
    event: 'message:send',
    fields: ['conversationId', 'text', 'messageId', ...SEND_OPTIONS],
    http: {
      method: 'POST', path: '/conversations/{conversationId}/messages', body: ['text', 'messageId', ...SEND_OPTIONS],
      reply: ackOf,
    },
  },
  'message:read': {
    event: 'message:read',
    fields: ['conversationId', 'messageId'],
    http: { method: 'POST', path: '/conversations/{conversationId}/read', body: ['messageId'] },
  },
  'message:react': {
    event: 'message:react',
    fields: ['conversationId', 'messageId', 'emoji'],
    http: { method: 'POST', path: '/conversations/{conversationId}/messages/{messageId}/reactions', body: ['emoji'] },
  },
  // Throttled by Presence; typing is ephemeral, so the socket asks for no ack.
  typing: {
    event: (payload) => (payload.isTyping ? 'typing:start' : 'typing:stop'),
    fields: ['conversationId'],
    noAck: true,
    http: { method: 'POST', path: '/conversations/{conversationId}/typing', body: ['isTyping'] },
  },
  'presence:request': {
    event: 'presence:request',
    fields: ['conversationId'],
    http: { method: 'GET', path: '/presence', query: ['conversationId'] },
  },
  'conversation:update': {
    event: 'conversation:update',
    fields: ['conversationId', 'title'],
    http: { method: 'PATCH', path: '/conversations/{conversationId}', body: ['title'] },
  },
  // A message after it is sent, `id` its server id (docs/protocol.md, "Messages
  // after they are sent"). Edits and deletions go through the outbox.
  'message:edit': {
    event: 'message:edit',
    fields: ['conversationId', 'id', 'text'],
    http: { method: 'PATCH', path: MESSAGE, body: ['text'] },
  },
  'message:delete': { event: 'message:delete', fields: ['conversationId', 'id'], http: { method: 'DELETE', path: MESSAGE } },
  'message:versions': {
    event: 'message:versions', fields: ['conversationId', 'id'], http: { method: 'GET', path: `${MESSAGE}/versions` },
  },
  'message:pin': { event: 'message:pin', fields: ['conversationId', 'id'], http: { method: 'PUT', path: `${MESSAGE}/pin` } },
  'message:unpin': {
    event: 'message:unpin', fields: ['conversationId', 'id'], http: { method: 'DELETE', path: `${MESSAGE}/pin` },
  },
  // Members ("Roles"): removing ourselves is leaving for good.
  'member:add': {
    event: 'member:add',
    fields: ['conversationId', 'userId'],
    http: { method: 'POST', path: '/conversations/{conversationId}/members', body: ['userId'] },
  },
  'member:remove': { event: 'member:remove', fields: ['conversationId', 'userId'], http: { method: 'DELETE', path: MEMBER } },
  'member:role': {
    event: 'member:role', fields: ['conversationId', 'userId', 'role'], http: { method: 'PATCH', path: MEMBER, body: ['role'] },
  },

  // -- socket only: over HTTP there is no room (the long-poll carries every
  // conversation of ours), so a join there is a history catch-up ----------------------
  authenticate: { event: 'authenticate', fields: ['token'] },
  // `cursor` (the last join's or the long-poll's): every change after it is replayed.
  'conversation:join': { event: 'conversation:join', fields: ['conversationId', 'since', 'cursor'] },
  'conversation:leave': { event: 'conversation:leave', fields: ['conversationId'], noAck: true },

  // -- REST only, whether or not the socket is up ---------------------------------------
  'conversations:list': { http: { method: 'GET', path: '/conversations' } },
  'conversation:create': { http: { method: 'POST', path: '/conversations', body: ['title', 'members'] } },
  'messages:history': {
    http: { method: 'GET', path: '/conversations/{conversationId}/messages', query: ['since', 'before', 'limit'] },
  },
  // Without a cursor the server answers at once with the current one.
  poll: { http: { method: 'GET', path: '/poll', query: ['cursor', 'live'] } },
});

/** @param {string} name @returns {Operation} */
function operation(name) {
  const declared = OPERATIONS[name];
  if (!declared) throw new TypeError(`no client operation ${JSON.stringify(name)}`);
  return declared;
}

/**
 * The payload's fields that are given, in the declared order.
 * @param {Record<string, unknown>} payload @param {string[]} fields
 * @returns {Record<string, unknown>}
 */
function pick(payload, fields) {
  /** @type {Record<string, unknown>} */
  const picked = {};
  for (const field of fields) if (payload[field] !== undefined) picked[field] = payload[field];
  return picked;
}

/**
 * The socket event of an operation.
 * @param {string} name @param {Record<string, unknown>} payload
 * @returns {{event: string, data: Record<string, unknown>, ack: boolean}}
 */
export function socketRequest(name, payload) {
  const { event, fields, noAck } = operation(name);
  if (event === undefined) throw new TypeError(`${name} has no socket event: it is REST only`);
  return {
    event: typeof event === 'function' ? event(payload) : event,
    data: fields ? pick(payload, fields) : { ...payload },
    ack: !noAck,
  };
}

/**
 * The REST request of an operation.
 * @param {string} name @param {Record<string, unknown>} payload
 * @returns {{method: string, path: string, body: unknown, reply: ((answer: any, payload: any) => any) | undefined}}
 */
export function httpRequest(name, payload) {
  const { http } = operation(name);
  if (http === undefined) throw new TypeError(`${name} has no REST form: it is socket only`);
  let path = http.path.replace(/\{(\w+)\}/g, (_, field) => encodeURIComponent(String(payload[field])));
  const query = Object.entries(pick(payload, http.query || []))
    .map(([field, value]) => `${field}=${encodeURIComponent(String(value))}`);
  if (query.length > 0) path += `?${query.join('&')}`;
  return { method: http.method, path, body: http.body ? pick(payload, http.body) : undefined, reply: http.reply };
}

/**
 * The ack of a REST send: the answer is the stored message or an ack-shaped object.
 * @param {any} body @param {{messageId: string | number, conversationId: number}} payload
 * @returns {SendAck}
 */
function ackOf(body, payload) {
  const source = isObject(body) && isObject(body.message) ? body.message : body;
  /** @type {SendAck} */
  const ack = {
    messageId: payload.messageId,
    status: 'sent',
    id: Number(source.id),
    conversationId: Number(source.conversationId ?? payload.conversationId),
    createdAt: String(source.createdAt),
  };
  if (body.duplicate || source.duplicate) ack.duplicate = true;
  return ack;
}
