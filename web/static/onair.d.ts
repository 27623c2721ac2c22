// Type declarations for onair.js, the browser client of onair.
//
//   import { connect } from "https://onair.example.com/onair.js";
//   const client = connect({ token: async () => (await fetch("/my-backend/onair-token")).text() });
//   client.on("meeting.started", (meeting) => showPrompt(meeting));
//
// See the comment block at the top of onair.js for the full behaviour.

/** A meeting as onair reports it (times are RFC 3339, UTC, with milliseconds). */
export interface Meeting {
  uuid: string;
  /** The meeting number, always a string. */
  id: string;
  topic: string;
  host_id: string;
  type: number;
  start_time: string;
  end_time?: string;
  duration: number;
  timezone: string;
  /** The connected user's part in the meeting. */
  role: "host" | "participant";
  live: boolean;
}

export type BotState =
  | "requested"
  | "dispatched"
  | "joining"
  | "joined"
  | "left"
  | "failed"
  | "cancelled";

/** A "send the bot" request. Active while requested, dispatched, joining or joined. */
export interface Bot {
  request_id: string;
  meeting_uuid: string;
  state: BotState;
  /** Why it failed, or other information from the bot launcher. */
  detail?: string;
  updated_at: string;
}

interface FrameBase {
  /** Position in the user's stream: increases by exactly 1 per frame. */
  seq: number;
  /** Changes when the server's event log starts over. */
  epoch: string;
  /** When the change happened (RFC 3339). */
  at: string;
}

export type MeetingEventType = "meeting.started" | "meeting.ended" | "meeting.joined" | "meeting.left";

export interface MeetingFrame extends FrameBase {
  type: MeetingEventType;
  meeting: Meeting;
}

export interface BotFrame extends FrameBase {
  type: "bot.updated";
  bot: Bot;
}

export interface WelcomeFrame {
  type: "welcome";
  user: string;
  epoch: string;
  seq: number;
  resumed: boolean;
  meetings?: Meeting[];
  bots?: Bot[];
}

/** Any frame the server sends, including types newer than this client. */
export type Frame = MeetingFrame | BotFrame | WelcomeFrame | { type: string; seq?: number; epoch?: string; [key: string]: unknown };

export type ConnectionStateName = "connecting" | "connected" | "reconnecting" | "offline" | "closed";

export type StateReason =
  | "server_restarting"
  | "slow_consumer"
  | "unauthorized"
  | "protocol"
  | "network"
  | "token"
  | "resync"
  | "timeout"
  | "too_many_tabs"
  | "client";

export interface ConnectionState {
  state: ConnectionStateName;
  /** "reconnecting" only: when the next attempt starts (milliseconds since the epoch). */
  retryAt?: number;
  /** The WebSocket close code of the drop that led to this state. */
  code?: number;
  /**
   * Why. For "closed": "client" (close() was called), "unauthorized" (4401 with a
   * fixed token or the session cookie), or "too_many_tabs" (4429).
   */
  reason?: StateReason;
  /** The server's close reason text, or the error, when there was one. */
  message?: string;
}

export interface WelcomeEvent {
  user: string | null;
  epoch: string;
  seq: number;
  /** false: the state was replaced by the server's snapshot; re-render everything. */
  resumed: boolean;
  /** The current live meetings, newest start first. */
  meetings: Meeting[];
  /** The latest bot request of each live meeting. */
  bots: Bot[];
}

/**
 * A welcome named another user than the previous welcome of this client (the token
 * or the session cookie now belongs to someone else). Emitted before that welcome is
 * applied, with the previous user's meetings, bots and position already dropped; the
 * welcome then applies as a fresh snapshot. Pages that show who is signed in should
 * start over (e.g. location.reload()).
 */
export interface UserChangeEvent {
  /** The user of the previous welcome. */
  previous: string;
  /** The user of this welcome (also client.user from now on). */
  user: string;
}

export interface OnairEvents {
  "meeting.started": (meeting: Meeting, frame: MeetingFrame) => void;
  "meeting.ended": (meeting: Meeting, frame: MeetingFrame) => void;
  "meeting.joined": (meeting: Meeting, frame: MeetingFrame) => void;
  "meeting.left": (meeting: Meeting, frame: MeetingFrame) => void;
  "bot.updated": (bot: Bot, frame: BotFrame) => void;
  welcome: (welcome: WelcomeEvent) => void;
  /** Another user than the previous welcome's: local state was dropped. */
  user: (change: UserChangeEvent) => void;
  state: (state: ConnectionState) => void;
  /** Every frame received, after it was applied. */
  frame: (frame: Frame) => void;
}

export interface ConnectOptions {
  /** onair's base URL (http, https, ws or wss); the socket is at its path + "/ws". Default: location.origin. */
  url?: string;
  /**
   * A connection token, or a function returning one, called before every (re)connect.
   * Without it the session cookie authenticates (same-origin pages only).
   * With a function, a 4401 close fetches a new token and retries; with a string it stops.
   */
  token?: string | (() => string | Promise<string>);
  /** The WebSocket constructor (default: globalThis.WebSocket). */
  WebSocket?: new (url: string) => WebSocket;
  /** Reconnect delays in ms: retry n waits min(cap, base * 2^n) * random[0, 1] (full jitter); after a 1012, every retry waits restartCap * random[0, 1]. */
  backoff?: { base?: number; cap?: number; restartCap?: number };
  /** How long to wait for the welcome after the socket opened, in ms (default 15000). */
  welcomeTimeout?: number;
}

export declare class OnairClient {
  /** Live meetings by uuid, kept up to date. */
  readonly meetings: Map<string, Meeting>;
  /** The latest bot request per live meeting, by meeting uuid. */
  readonly bots: Map<string, Bot>;
  /** The user id from the last welcome (see the "user" event), or null before the first. */
  readonly user: string | null;
  /** The position of the last frame applied, sent as "since" on reconnect. */
  readonly position: { epoch: string; seq: number } | null;
  /** The current connection state. */
  readonly state: ConnectionState;
  /** Adds a listener; returns a function that removes it. Listener exceptions are reported, never thrown into the client. */
  on<K extends keyof OnairEvents>(type: K, listener: OnairEvents[K]): () => void;
  /** Removes a listener added with on(). */
  off<K extends keyof OnairEvents>(type: K, listener: OnairEvents[K]): void;
  /** Reconnects now; also restarts a client closed for "unauthorized" or "too_many_tabs". */
  reconnect(): void;
  /** Closes the connection for good (state "closed", reason "client"). */
  close(): void;
}

/** Connects to onair. The socket opens on the next microtask, so listeners added right away see everything. */
export declare function connect(options?: ConnectOptions): OnairClient;

/** True while a bot request is in progress (requested, dispatched, joining, joined). */
export declare function isBotActive(bot: Bot | null | undefined): boolean;

/** The WebSocket URL for onair's base URL (http→ws, https→wss, path + "/ws"). */
export declare function socketURL(base: string): string;
