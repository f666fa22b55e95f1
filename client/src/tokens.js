// Where the JWT comes from: the one given, `getToken()`, or the portal's
// GET <mainSiteUrl>/api/messenger/token. Both transports take it from here, so a
// token refreshed for one is the one the other uses.

import { ChatError } from './errors.js';

export class TokenSource {
  /**
   * @param {{token?: string, getToken?: () => (string | Promise<string>), mainSiteUrl: string | null,
   *   fetch: typeof fetch}} options
   */
  constructor(options) {
    /** @type {string | null} */
    this.token = options.token || null;
    /** @type {(() => (string | Promise<string>)) | null} */
    this._getToken = options.getToken || null;
    this._mainSiteUrl = options.mainSiteUrl;
    this._fetch = options.fetch;
    /** @type {Promise<string> | null} one request at a time, however many callers wait */
    this._request = null;
  }

  /** Whether a refused or expired token can be replaced. */
  get canRefresh() {
    return Boolean(this._getToken || this._mainSiteUrl);
  }

  /** The token was refused or expired: the next `current()` fetches a new one. */
  forget() {
    this.token = null;
  }

  /** @returns {Promise<string>} the token to use now, fetching one when there is none */
  async current() {
    if (this.token) return this.token;
    if (!this._request) {
      this._request = (async () => {
        try {
          let token;
          if (this._getToken) {
            token = await this._getToken();
          } else if (this._mainSiteUrl) {
            const response = await this._fetch(`${this._mainSiteUrl}/api/messenger/token`, { credentials: 'include' });
            if (!response.ok) throw new ChatError('AUTH_FAILED', `the portal answered ${response.status}`, response.status);
            token = (await response.json()).token;
          }
          if (typeof token !== 'string' || !token) throw new ChatError('AUTH_FAILED', 'no token to connect with');
          this.token = token;
          return token;
        } finally {
          this._request = null;
        }
      })();
    }
    return this._request;
  }
}
