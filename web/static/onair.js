// onair.js: the browser client of onair ("your meeting is live").
// A dependency-free ES module; types in /onair.d.ts.
//
//   import { connect } from "https://onair.example.com/onair.js";
//
//   const client = connect({
//     url: "https://onair.example.com",          // default: the page's origin
//     token: async () => (await fetch("/my-backend/onair-token")).text(),
//   });
//   client.on("meeting.started", (meeting, frame) => { ... });
//   client.on("meeting.ended",   (meeting, frame) => { ... });
//   client.on("meeting.joined",  (meeting, frame) => { ... });
//   client.on("meeting.left",    (meeting, frame) => { ... });
//   client.on("bot.updated",     (bot, frame) => { ... });
//   client.on("state",   (s) => { ... });  // {state, retryAt?, code?, reason?, message?}
//   client.on("welcome", (w) => { ... });  // {user, epoch, seq, resumed, meetings, bots}
//   client.on("user",    (u) => { ... });  // {previous, user}: another user now
//   client.meetings;  // Map uuid -> Meeting: the live meetings, kept up to date
//   client.bots;      // Map meeting_uuid -> Bot: the latest request of each live meeting
//   client.close();
//
// connect(options) opens the connection on the next microtask, so listeners
// added right after connect() see every event, the first "state" included.
//
// Options:
//   url        onair's base URL (http, https, ws or wss). The socket is at its
//              path + "/ws". Default: location.origin.
//   token      a connection token (string), or a function returning one (or a
//              promise of one), called before every (re)connect. Without it the
//              session cookie authenticates (same-origin pages only).
//   WebSocket  the WebSocket constructor to use (default: globalThis.WebSocket).
//   backoff    {base = 250, cap = 10000, restartCap = 2000} in ms (see below).
//   welcomeTimeout  ms to wait for the server's welcome before retrying (15000).
//
// Events (on(type, listener) returns a function that removes the listener;
// off(type, listener) does the same; a listener that throws is reported with
// reportError/console.error and does not disturb the client or other listeners):
//   "meeting.started" | "meeting.ended" | "meeting.joined" | "meeting.left"
//                   (meeting, frame): after client.meetings was updated.
//   "bot.updated"   (bot, frame): after client.bots was updated.
//   "welcome"       ({user, epoch, seq, resumed, meetings, bots}) after every
//                   welcome; meetings (newest start first) and bots are the
//                   client's current state as arrays. When resumed is false the
//                   state was replaced by the server's snapshot: re-render from it.
//                   When resumed is true the missed frames follow as events.
//   "user"          ({previous, user}) when a welcome names another user than
//                   the previous welcome did (the token or the session cookie
//                   now belongs to someone else). Emitted before that welcome is
//                   applied, with the previous user's state already dropped:
//                   client.meetings and client.bots are empty, client.position
//                   is null and client.user is the new user. The welcome then
//                   applies as a fresh snapshot (a "welcome" event with resumed
//                   false follows; a resumed welcome is refused and the client
//                   reconnects for a snapshot). A page that shows who is signed
//                   in should start over (e.g. location.reload()).
//   "state"         ({state, retryAt?, code?, reason?, message?}) on every change:
//                   "connecting"   opening the socket / waiting for the welcome
//                   "connected"    welcome received; frames flow
//                   "reconnecting" waiting until retryAt (epoch ms) to try again
//                   "offline"      navigator.onLine is false: waiting for "online"
//                   "closed"       stopped for good: reason "client" (close()),
//                                  "unauthorized" (4401 with a fixed token or
//                                  the cookie) or "too_many_tabs" (4429)
//                   code: the close code of the drop that led here, reason: why
//                   ("server_restarting", "slow_consumer", "unauthorized",
//                   "protocol", "network", "token", "resync", "timeout",
//                   "too_many_tabs", "client"), message: the server's close text.
//   "frame"         (frame) every frame received, known type or not, after it
//                   was applied (for debugging and for frame types newer than
//                   this client).
//
// Protocol (onair CONTRACT §4): the first frame sent is {"type":"hello"} with
// "token" when one is configured and "since":{"epoch","seq"} once a position
// is known, so a reconnect resumes with exactly the missed frames. Frames with
// seq <= the last one are duplicates and ignored; a gap or another epoch closes
// the socket and reconnects (the resume repairs it). Close codes: 4401 stops
// unless token is a function (then a new token is fetched and retried with
// backoff); 4429 stops; everything else (1012 restart, 1008 slow consumer,
// 4400/4408/1003/1009 protocol, network failures) retries. Retry n (0 for the
// first after a drop) waits min(cap, base * 2^n) * random[0, 1] ("full
// jitter": when a restart drops thousands of tabs at once, their reconnects
// spread over the whole window instead of bunching in its second half);
// after a 1012, until the next welcome (which resets n), every retry waits
// restartCap * random[0, 1].
//
// Other members: client.state (the last state object), client.user (the
// user id from the welcome, or null), client.position ({epoch, seq} or null),
// client.reconnect() (reconnect now, e.g. from a "Retry now" button; also
// restarts a client closed for "unauthorized" or "too_many_tabs").
// isBotActive(bot) tells whether a bot request is still in progress.

const ACTIVE = new Set(["requested", "dispatched", "joining", "joined"]);

/** True for the states in which a bot request is still in progress. */
export function isBotActive(bot) {
  return !!bot && ACTIVE.has(bot.state);
}

const MEETING_EVENTS = new Set(["meeting.started", "meeting.ended", "meeting.joined", "meeting.left"]);
const EVENTS = new Set([...MEETING_EVENTS, "bot.updated", "welcome", "user", "state", "frame"]);

const CLOSE_REASONS = {
  1003: "protocol",
  1008: "slow_consumer",
  1009: "protocol",
  1012: "server_restarting",
  4400: "protocol",
  4401: "unauthorized",
  4408: "protocol",
  4429: "too_many_tabs",
};

// Close codes this client uses for the sockets it closes itself.
const CLOSE_CLIENT = 1000;
const CLOSE_RESYNC = 4000;

/** Derives the socket URL from onair's base URL. */
export function socketURL(base) {
  const u = new URL(base);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  else if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new TypeError(`onair: unsupported URL scheme ${u.protocol}`);
  }
  const path = u.pathname.replace(/\/+$/, "");
  u.pathname = path.endsWith("/ws") ? path : path + "/ws";
  u.search = "";
  u.hash = "";
  return u.toString();
}

function report(err) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(err);
  else console.error(err);
}

function byStartDesc(a, b) {
  const ta = Date.parse(a.start_time) || 0;
  const tb = Date.parse(b.start_time) || 0;
  return tb - ta || (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0);
}

class OnairClient {
  constructor(options = {}) {
    const base = options.url ?? globalThis.location?.origin;
    if (!base) throw new TypeError("onair: the url option is required outside a browser page");
    this._url = socketURL(base);
    this._token = options.token;
    this._WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WS !== "function") throw new TypeError("onair: no WebSocket implementation");
    const b = options.backoff ?? {};
    this._base = b.base ?? 250;
    this._cap = b.cap ?? 10000;
    this._restartCap = b.restartCap ?? 2000;
    this._welcomeTimeout = options.welcomeTimeout ?? 15000;

    /** @type {Map<string, object>} */
    this.meetings = new Map();
    /** @type {Map<string, object>} */
    this.bots = new Map();
    this.user = null;
    this.position = null; // {epoch, seq} of the last frame applied
    this.state = { state: "connecting" };

    this._listeners = new Map();
    this._ws = null;
    this._welcomed = false;
    this._attempt = 0; // retries since the last welcome
    this._fastCap = false; // a 1012 in this series: the server comes right back
    this._resyncs = 0; // consecutive gap repairs with nothing applied in between
    this._timer = null;
    this._welcomeTimer = null;
    this._closed = false; // close() was called
    this._stopped = false; // closed by the server for good (4401, 4429)
    this._generation = 0; // bumps on every connect; stale async work checks it

    this._onOnline = () => {
      if (this._closed || this._stopped) return;
      if (this.state.state === "offline" || this.state.state === "reconnecting") this._open();
    };
    this._onOffline = () => {
      // A live socket may well still work (onLine is a hint): only a pending
      // retry is turned into waiting for "online".
      if (this.state.state === "reconnecting") {
        this._clearTimer();
        this._setState({ state: "offline", code: this.state.code, reason: this.state.reason });
      }
    };
    this._onPageShow = (e) => {
      // Restored from the back/forward cache: the socket was closed meanwhile.
      if (e.persisted && !this._closed && !this._stopped && this.state.state !== "connected") this._open();
    };
    if (typeof globalThis.addEventListener === "function") {
      globalThis.addEventListener("online", this._onOnline);
      globalThis.addEventListener("offline", this._onOffline);
      globalThis.addEventListener("pageshow", this._onPageShow);
    }
    queueMicrotask(() => {
      if (!this._closed) this._open();
    });
  }

  /** Adds a listener; returns a function that removes it. */
  on(type, listener) {
    if (!EVENTS.has(type)) throw new TypeError(`onair: unknown event ${JSON.stringify(type)}`);
    if (typeof listener !== "function") throw new TypeError("onair: listener must be a function");
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    // Wrap so the same function may be added twice and removed one at a time.
    const entry = { listener };
    set.add(entry);
    return () => set.delete(entry);
  }

  /** Removes a listener added with on(). */
  off(type, listener) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const entry of set) {
      if (entry.listener === listener) {
        set.delete(entry);
        return;
      }
    }
  }

  /** Reconnects now (skipping a pending wait); restarts a client the server stopped. */
  reconnect() {
    if (this._closed) return;
    this._stopped = false;
    this._attempt = 0;
    this._drop(CLOSE_CLIENT, "reconnect");
    this._open();
  }

  /** Closes the connection for good. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._drop(CLOSE_CLIENT, "closed by the client");
    this._clearTimer();
    if (typeof globalThis.removeEventListener === "function") {
      globalThis.removeEventListener("online", this._onOnline);
      globalThis.removeEventListener("offline", this._onOffline);
      globalThis.removeEventListener("pageshow", this._onPageShow);
    }
    this._setState({ state: "closed", reason: "client" });
  }

  _emit(type, ...args) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const { listener } of [...set]) {
      try {
        listener(...args);
      } catch (err) {
        report(err);
      }
    }
  }

  _setState(s) {
    this.state = s;
    this._emit("state", s);
  }

  _clearTimer() {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  // _drop detaches and closes the current socket, if any, without scheduling.
  _drop(code, text) {
    clearTimeout(this._welcomeTimer);
    this._welcomeTimer = null;
    const ws = this._ws;
    this._ws = null;
    this._welcomed = false;
    this._generation++;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(code, text);
    } catch {
      // already closing
    }
  }

  async _open() {
    if (this._closed || this._stopped) return;
    this._clearTimer();
    this._drop(CLOSE_CLIENT, "reconnect");
    if (globalThis.navigator?.onLine === false) {
      this._setState({ state: "offline", code: this.state.code, reason: this.state.reason });
      return;
    }
    const gen = this._generation;
    this._setState({ state: "connecting" });

    let token;
    if (typeof this._token === "function") {
      try {
        token = await this._token();
      } catch (err) {
        if (gen !== this._generation || this._closed) return;
        report(err);
        this._retry({ reason: "token", message: String(err?.message ?? err) });
        return;
      }
      if (gen !== this._generation || this._closed) return;
    } else {
      token = this._token;
    }

    let ws;
    try {
      ws = new this._WS(this._url);
    } catch (err) {
      report(err);
      this._retry({ reason: "network", message: String(err?.message ?? err) });
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      const hello = { type: "hello" };
      if (token != null && token !== "") hello.token = String(token).trim();
      if (this.position) hello.since = { epoch: this.position.epoch, seq: this.position.seq };
      try {
        ws.send(JSON.stringify(hello));
      } catch {
        return; // onclose follows
      }
      this._welcomeTimer = setTimeout(() => {
        if (ws !== this._ws) return;
        this._drop(CLOSE_CLIENT, "no welcome");
        this._retry({ reason: "timeout" });
      }, this._welcomeTimeout);
    };
    ws.onmessage = (e) => {
      if (ws === this._ws) this._onMessage(e.data);
    };
    ws.onclose = (e) => {
      if (ws !== this._ws) return;
      this._ws = null;
      this._onClose(e.code, e.reason);
    };
    ws.onerror = () => {
      // Browsers follow with onclose; some implementations (Node's, when the
      // connection is refused) never do: then the socket counts as dropped.
      setTimeout(() => {
        if (ws !== this._ws) return;
        this._drop(CLOSE_CLIENT, "error");
        this._onClose(1006, "");
      }, 1000);
    };
  }

  _onClose(code, message) {
    clearTimeout(this._welcomeTimer);
    this._welcomeTimer = null;
    this._welcomed = false;
    this._generation++;
    const reason = CLOSE_REASONS[code] ?? "network";
    const info = { code, reason };
    if (message) info.message = message;
    if (code === 4429 || (code === 4401 && typeof this._token !== "function")) {
      this._stopped = true;
      this._setState({ state: "closed", ...info });
      return;
    }
    if (code === 1012) this._fastCap = true;
    this._retry(info);
  }

  _retry(info, minAttempt = 0) {
    this._clearTimer();
    if (this._closed || this._stopped) return;
    if (globalThis.navigator?.onLine === false) {
      this._setState({ state: "offline", ...info });
      return;
    }
    const n = Math.max(this._attempt, minAttempt);
    this._attempt = n + 1;
    // After a 1012 every tab of the server reconnects at once: each waits a
    // random time in the whole restart window, from the first attempt on, so
    // the server comes back to a spread-out herd (storm of 15,000 tabs: all
    // back in 5.0 s against 5.7 s when the first waits started at base).
    const step = this._fastCap ? Math.min(this._cap, this._restartCap) : Math.min(this._cap, this._base * 2 ** Math.min(n, 30));
    const delay = Math.round(step * Math.random());
    const retryAt = Date.now() + delay;
    this._timer = setTimeout(() => {
      this._timer = null;
      this._open();
    }, delay);
    this._setState({ state: "reconnecting", retryAt, ...info });
  }

  // _resync closes the socket after a gap or an epoch change and reconnects
  // from the last position: the resume repairs the stream.
  _resync(reason) {
    this._drop(CLOSE_RESYNC, reason);
    this._resyncs++;
    this._retry({ reason: "resync", message: reason }, this._resyncs - 1);
  }

  _onMessage(data) {
    if (typeof data !== "string") {
      this._resync("unexpected binary frame");
      return;
    }
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this._resync("malformed frame");
      return;
    }
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") {
      this._resync("malformed frame");
      return;
    }
    if (frame.type === "welcome") {
      this._onWelcome(frame);
      return;
    }
    if (!this._welcomed) {
      this._resync("frame before welcome");
      return;
    }
    if (typeof frame.seq === "number") {
      const pos = this.position;
      if (frame.epoch !== undefined && frame.epoch !== pos.epoch) {
        this._resync("epoch changed");
        return;
      }
      if (frame.seq <= pos.seq) return; // duplicate
      if (frame.seq !== pos.seq + 1) {
        this._resync(`gap: expected seq ${pos.seq + 1}, got ${frame.seq}`);
        return;
      }
      this.position = { epoch: pos.epoch, seq: frame.seq };
      this._resyncs = 0;
    }
    this._apply(frame);
    this._emit("frame", frame);
  }

  _onWelcome(w) {
    if (this._welcomed) {
      this._resync("second welcome");
      return;
    }
    const user = typeof w.user === "string" && w.user !== "" ? w.user : null;
    if (user !== null && this.user !== null && user !== this.user) {
      // Another identity: nothing of the previous user's state may survive,
      // not even the position (a resume would continue their stream).
      const previous = this.user;
      this.meetings = new Map();
      this.bots = new Map();
      this.position = null;
      this.user = user;
      const gen = this._generation;
      this._emit("user", { previous, user });
      // A listener may have closed or reconnected the client.
      if (gen !== this._generation || this._closed || this._stopped) return;
    }
    const pos = this.position;
    const seq = typeof w.seq === "number" ? w.seq : 0;
    if (w.resumed) {
      // The server resumes from our own position; anything else cannot be
      // trusted: start over with a fresh snapshot.
      if (!pos || w.epoch !== pos.epoch || seq > pos.seq) {
        this.position = null;
        this._resync("resumed from an unknown position");
        return;
      }
      // seq < pos.seq: the frames up to pos.seq are duplicates and skipped.
    } else {
      this.meetings = new Map();
      this.bots = new Map();
      for (const m of Array.isArray(w.meetings) ? w.meetings : []) {
        if (m && typeof m.uuid === "string") this.meetings.set(m.uuid, m);
      }
      for (const b of Array.isArray(w.bots) ? w.bots : []) {
        if (b && typeof b.meeting_uuid === "string") this._setBot(b);
      }
      this.position = { epoch: w.epoch, seq };
    }
    clearTimeout(this._welcomeTimer);
    this._welcomeTimer = null;
    this._welcomed = true;
    this._attempt = 0;
    this._fastCap = false;
    if (user !== null) this.user = user;
    this._setState({ state: "connected" });
    this._emit("welcome", {
      user: this.user,
      epoch: this.position.epoch,
      seq: this.position.seq,
      resumed: !!w.resumed,
      meetings: [...this.meetings.values()].sort(byStartDesc),
      bots: [...this.bots.values()],
    });
    this._emit("frame", w);
  }

  // _setBot keeps the newest request per meeting (a late update of an older
  // request does not replace a newer one).
  _setBot(bot) {
    const cur = this.bots.get(bot.meeting_uuid);
    if (cur && cur.request_id !== bot.request_id && (Date.parse(cur.updated_at) || 0) > (Date.parse(bot.updated_at) || 0)) {
      return false;
    }
    this.bots.set(bot.meeting_uuid, bot);
    return true;
  }

  _apply(frame) {
    if (MEETING_EVENTS.has(frame.type)) {
      const m = frame.meeting;
      if (!m || typeof m.uuid !== "string") return;
      if (frame.type === "meeting.started" || frame.type === "meeting.joined") {
        this.meetings.set(m.uuid, m);
      } else {
        this.meetings.delete(m.uuid);
        this.bots.delete(m.uuid);
      }
      this._emit(frame.type, m, frame);
    } else if (frame.type === "bot.updated") {
      const b = frame.bot;
      if (!b || typeof b.meeting_uuid !== "string") return;
      // bots mirrors the live meetings: an update after the meeting ended
      // (the bot left) is announced but not kept.
      if (this.meetings.has(b.meeting_uuid)) this._setBot(b);
      this._emit("bot.updated", b, frame);
    }
    // Other types: newer than this client; ignored (but seq was counted).
  }
}

/** Connects to onair; see the comment at the top of this file. */
export function connect(options) {
  return new OnairClient(options);
}

export { OnairClient };
