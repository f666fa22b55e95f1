// ChatError, and which failures are worth trying again: shared by both transports
// and everything that calls them, so a failure means the same whichever carried it.

/** @typedef {import('./types.js').ChatErrorInfo} ChatErrorInfo */

/** An error with the server's error code. */
export class ChatError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {number} [status] the HTTP status, for errors from the REST API
   */
  constructor(code, message, status) {
    super(message);
    this.name = 'ChatError';
    this.code = code;
    this.status = status;
  }
}

// Codes after which the same request may succeed later; every other failure is final.
// OFFLINE is this client's own (no answer came): the server never sends it.
export const RETRYABLE = new Set(['UNAVAILABLE', 'RATE_LIMITED', 'OFFLINE', 'UNAUTHENTICATED', 'TOKEN_EXPIRED']);

/**
 * What went wrong, as `{ code, message }`: a ChatError's own, anything else (a bug,
 * a network error that escaped) as OFFLINE.
 * @param {unknown} error @returns {ChatErrorInfo}
 */
export function errorInfo(error) {
  return error instanceof ChatError ? { code: error.code, message: error.message } : { code: 'OFFLINE', message: String(error) };
}

/**
 * A refusal the REST API answered (it has an HTTP status) that no retry will change:
 * the conversation is closed for good (FORBIDDEN, NOT_FOUND, ...).
 * @param {unknown} error @returns {error is ChatError}
 */
export function finalHttpRefusal(error) {
  return error instanceof ChatError && !RETRYABLE.has(error.code) && error.status !== undefined;
}
