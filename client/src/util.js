// Small helpers without state, shared by the client's modules.

/** @typedef {import('./types.js').ChatMessage} ChatMessage */
/** @typedef {import('./types.js').Identity} Identity */

/** @param {unknown} value @returns {value is Record<string, any>} */
export function isObject(value) {
  return typeof value === 'object' && value !== null;
}

/** @returns {string} a new client message id */
export function newMessageId() {
  const cryptoApi = globalThis.crypto;
  if (cryptoApi && typeof cryptoApi.randomUUID === 'function') return cryptoApi.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

/**
 * @param {number} ms
 * @param {AbortSignal} [signal] ends the wait early
 * @returns {Promise<void>}
 */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done);
  });
}

/**
 * `delay` varied by up to ± `jitter` of itself, as socket.io-client varies its reconnect
 * delays: pages that failed together do not all retry in the same instant.
 * @param {number} delay @param {number} jitter @returns {number}
 */
export function jittered(delay, jitter) {
  return Math.max(0, Math.round(delay * (1 + jitter * (2 * Math.random() - 1))));
}

/**
 * @param {string} url
 * @returns {string} the same URL with http(s) in place of ws(s), without a trailing slash
 */
export function httpBase(url) {
  return url.replace(/^ws(s?):/i, 'http$1:').replace(/\/+$/, '');
}

/** @param {any} body @returns {ChatMessage[]} */
export function messagesOf(body) {
  const list = Array.isArray(body) ? body : isObject(body) && Array.isArray(body.messages) ? body.messages : [];
  return list.filter((message) => isObject(message) && typeof message.id === 'number');
}

/**
 * The claims of a JWT, unverified: only to show who we are while the socket is down.
 * @param {string} token
 * @returns {Record<string, unknown>}
 */
function jwtClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(part), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''));
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' ? claims : {};
  } catch {
    return {};
  }
}

/** @param {string} token @returns {Identity | null} */
export function identityFromToken(token) {
  const claims = jwtClaims(token);
  const userId = claims.userId ?? claims.user_id ?? claims.sub;
  if (typeof userId !== 'number' && typeof userId !== 'string') return null;
  const name = typeof claims.name === 'string' ? claims.name : typeof claims.username === 'string' ? claims.username : String(userId);
  return { userId, name };
}
