// The page's side of ChatManager's events: `on`, `off`, and emitting to listeners
// that cannot break the client.

/** @typedef {import('./types.js').ChatEvents} ChatEvents */

export class Emitter {
  constructor() {
    /** @type {Map<string, Set<(data: any) => void>>} */
    this._listeners = new Map();
  }

  /**
   * Listen to an event; returns a function that removes the listener.
   * @template {keyof ChatEvents} K
   * @param {K} event
   * @param {(data: ChatEvents[K]) => void} listener
   * @returns {() => void}
   */
  on(event, listener) {
    let set = this._listeners.get(event);
    if (!set) {
      set = new Set();
      this._listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }

  /**
   * @template {keyof ChatEvents} K
   * @param {K} event
   * @param {(data: ChatEvents[K]) => void} listener
   */
  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  /**
   * @template {keyof ChatEvents} K
   * @param {K} event
   * @param {ChatEvents[K]} data
   */
  _emit(event, data) {
    for (const listener of [...(this._listeners.get(event) || [])]) {
      try {
        listener(data);
      } catch (error) {
        // A page's listener must not break the client.
        setTimeout(() => { throw error; });
      }
    }
  }
}
