// ChatManager's options: the defaults, the URLs derived from them, socket.io-client's
// reconnect settings, and the checks that refuse a setting that would hurt.

import { httpBase, jittered } from './util.js';

/** @typedef {import('./types.js').ChatManagerOptions} ChatManagerOptions */

export const DEFAULTS = {
  fallbackAfterErrors: 3,
  fallbackAfterMs: 10000,
  ackTimeoutMs: 10000,
  typingThrottleMs: 2000,
  typingIdleMs: 3000,
  pollTimeoutMs: 35000,
  retryDelayMs: 500,
  maxRetryDelayMs: 8000,
  reconnectDelayMs: 1000,
  maxReconnectDelayMs: 5000,
  // A server restart drops every page at once; with delays varied by ± half, their
  // reconnects spread over a second instead of arriving in one burst per back-off step.
  reconnectJitter: 0.5,
};

/** @typedef {typeof DEFAULTS & ChatManagerOptions} Settings */

/**
 * The options given, completed and checked.
 * @param {ChatManagerOptions} options
 * @returns {{wsServer: string, httpFallback: string | null, mainSiteUrl: string | null, settings: Settings,
 *   ioOptions: Record<string, unknown>, jitter: number}}
 */
export function resolveOptions(options) {
  const origin = globalThis.location ? globalThis.location.origin : '';
  const wsServer = options.wsServer || origin;
  const fallback = options.httpFallback ?? true;
  const httpFallback = fallback === false ? null
    : typeof fallback === 'string' ? fallback.replace(/\/+$/, '')
      : `${httpBase(wsServer)}/api/messenger`;
  const mainSiteUrl = options.mainSiteUrl ? options.mainSiteUrl.replace(/\/+$/, '') : null;
  const settings = { ...DEFAULTS, ...options };
  /** @type {Record<string, unknown>} socket.io-client's options: ours, socketOptions over them */
  const ioOptions = {
    reconnectionDelay: settings.reconnectDelayMs,
    reconnectionDelayMax: settings.maxReconnectDelayMs,
    randomizationFactor: settings.reconnectJitter,
    ...(settings.socketOptions || {}),
  };
  const jitter = ioOptions.randomizationFactor;
  if (typeof jitter !== 'number' || !(jitter > 0 && jitter < 1)) {
    throw new RangeError(`reconnectJitter (socket.io's randomizationFactor) must be above 0 and below 1, not ${String(jitter)}: `
      + 'without it every page reconnects in the same instant after a server restart');
  }
  return { wsServer, httpFallback, mainSiteUrl, settings, ioOptions, jitter };
}

/**
 * The wait before retry number `failures`: doubling from retryDelayMs up to
 * maxRetryDelayMs, jittered like the socket's reconnects.
 * @param {Settings} settings @param {number} jitter @param {number} failures @returns {number}
 */
export function retryDelay(settings, jitter, failures) {
  const delay = Math.min(settings.retryDelayMs * 2 ** Math.max(0, failures - 1), settings.maxRetryDelayMs);
  return jittered(delay, jitter);
}
