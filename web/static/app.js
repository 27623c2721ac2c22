// The signed-in page: live meetings, the "your meeting is live" prompt,
// "Send bot" with live bot state, the auto-send setting, connection state,
// desktop notifications and (dev mode) the simulate panel.
import { connect, isBotActive } from "/onair.js";

const $ = (sel, root = document) => root.querySelector(sel);

const main = document.getElementById("main");
const dev = main.dataset.dev === "true";
// The user this page was rendered for (its header names them).
const pageUser = main.dataset.userId || null;
const list = document.getElementById("meetings");
const listEmpty = document.getElementById("meetings-empty");
const promptBox = document.getElementById("prompt");
const connection = document.getElementById("connection");
const connText = $(".conn-text", connection);
const reconnectButton = $('[data-action="reconnect"]');
const notifyButton = document.getElementById("enable-notifications");
const statusLine = document.getElementById("status");
const announcer = document.getElementById("announcer");
const connAnnouncer = document.getElementById("connection-announcer");
const autoSend = document.getElementById("auto-send");
const simulateForm = document.getElementById("simulate-form");
const simulateTopic = document.getElementById("simulate-topic");
const simulateOutcome = document.getElementById("simulate-outcome");
const meetingsTitle = document.getElementById("meetings-title");
meetingsTitle.tabIndex = -1; // a place to put focus when what had it goes away

const client = connect();

// Bots as the API answered them: shown until a frame brings something newer.
const apiBots = new Map();
// uuid -> <li> and uuid -> prompt element.
const items = new Map();
const prompts = new Map();
// Requests in flight, as "action uuid".
const pending = new Set();
// meeting uuid -> "request_id state" of the bot last shown or announced, so a
// bot.updated frame is announced only when it brings a change.
const botSeen = new Map();
// meeting uuid -> topic, kept a while after the meeting ended: a bot update
// may follow the end (e.g. the bot left).
const topics = new Map();
let welcomes = 0;
let nextId = 0;

// ---- helpers ----------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c != null) el.append(c);
  return el;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });

function formatStart(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return d.toDateString() === new Date().toDateString() ? timeFmt.format(d) : dateTimeFmt.format(d);
}

function topicOf(m) {
  return (m && m.topic) || "Untitled meeting";
}

function rememberTopic(m) {
  if (!m || typeof m.uuid !== "string") return;
  topics.delete(m.uuid);
  topics.set(m.uuid, topicOf(m));
  if (topics.size > 200) topics.delete(topics.keys().next().value);
}

function botKey(bot) {
  return bot ? `${bot.request_id} ${bot.state}` : "";
}

function byStartDesc(a, b) {
  return (Date.parse(b.start_time) || 0) - (Date.parse(a.start_time) || 0) || (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0);
}

// The newer of the bot from the stream and the one from the last API answer.
function botFor(uuid) {
  const streamed = client.bots.get(uuid);
  const answered = apiBots.get(uuid);
  if (!answered) return streamed;
  if (!streamed) return answered;
  const ts = Date.parse(streamed.updated_at) || 0;
  const ta = Date.parse(answered.updated_at) || 0;
  return ta > ts ? answered : streamed;
}

const BOT_TEXT = {
  requested: "Bot requested",
  dispatched: "Bot dispatched",
  joining: "Bot joining",
  joined: "Bot joined",
  left: "Bot left",
  failed: "Bot failed",
  cancelled: "Bot cancelled",
};

function botText(bot) {
  const text = BOT_TEXT[bot.state] ?? `Bot ${bot.state}`;
  return bot.state === "failed" && bot.detail ? `${text}: ${bot.detail}` : text;
}

let statusTimer = 0;
function say(message, kind = "info") {
  clearTimeout(statusTimer);
  statusLine.textContent = message;
  statusLine.dataset.kind = kind;
  if (message) statusTimer = setTimeout(() => say(""), kind === "error" ? 15000 : 6000);
}

function announce(message) {
  // Cleared first so the same message is announced again.
  announcer.textContent = "";
  setTimeout(() => {
    announcer.textContent = message;
  }, 50);
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "onair could not be reached. Check your connection and try again.");
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    // no JSON body
  }
  if (!res.ok) {
    const e = data && data.error;
    if (res.status === 401) signedOut();
    throw new ApiError(res.status, e?.code ?? `http_${res.status}`, e?.message || `${res.status} ${res.statusText}`.trim());
  }
  return data;
}

function meetingPath(uuid) {
  return `/api/v1/meetings/${encodeURIComponent(uuid)}/bot`;
}

// Moves focus to el when focus was inside container (which is going away or
// changing), so keyboard users are not dropped at the top of the page.
function keepFocus(container, el) {
  if (container.contains(document.activeElement)) (el ?? meetingsTitle).focus();
}

function setPending(action, uuid, on) {
  const key = `${action} ${uuid}`;
  if (on) pending.add(key);
  else pending.delete(key);
  for (const root of [items.get(uuid), prompts.get(uuid)]) {
    const b = root && $(`[data-action="${action}"]`, root);
    if (b) b.setAttribute("aria-disabled", on ? "true" : "false");
  }
}

function isPending(action, uuid) {
  return pending.has(`${action} ${uuid}`);
}

// ---- dismissed prompts (per tab) ---------------------------------------------

const DISMISSED_KEY = "onair.dismissed";
const dismissed = new Set(readDismissed());

function readDismissed() {
  try {
    const v = JSON.parse(sessionStorage.getItem(DISMISSED_KEY) || "[]");
    return Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
  } catch {
    return [];
  }
}

function rememberDismissed(uuid) {
  dismissed.add(uuid);
  try {
    sessionStorage.setItem(DISMISSED_KEY, JSON.stringify([...dismissed].slice(-200)));
  } catch {
    // storage full or disabled: remembered for this page only
  }
}

// ---- the meetings list --------------------------------------------------------

function createItem(m) {
  const id = `m${++nextId}`;
  const li = h(
    "li",
    { class: "meeting", "data-uuid": m.uuid },
    h(
      "div",
      { class: "meeting-info" },
      h("h3", { class: "meeting-topic", id: `${id}-topic` }),
      h("p", { class: "meeting-meta" }, h("time", { class: "meeting-start" }), " · ", h("span", { class: "meeting-role" })),
    ),
    h(
      "div",
      { class: "meeting-actions" },
      h("span", { class: "bot-state", hidden: true }),
      h("button", { type: "button", class: "btn btn-primary btn-small", "data-action": "send-bot", "aria-describedby": `${id}-topic` }, "Send bot"),
      h("button", { type: "button", class: "btn btn-small", "data-action": "cancel-bot", "aria-describedby": `${id}-topic`, hidden: true }, "Cancel"),
      dev ? h("button", { type: "button", class: "btn btn-small btn-quiet", "data-action": "simulate-end", "aria-describedby": `${id}-topic`, hidden: true }, "End") : null,
    ),
  );
  items.set(m.uuid, li);
  return li;
}

function updateItem(li, m) {
  const bot = botFor(m.uuid);
  const active = isBotActive(bot);
  $(".meeting-topic", li).textContent = topicOf(m);
  const time = $(".meeting-start", li);
  time.dateTime = m.start_time || "";
  time.textContent = m.start_time ? `Started ${formatStart(m.start_time)}` : "Started";
  $(".meeting-role", li).textContent = m.role === "host" ? "You host" : "You joined";
  li.dataset.role = m.role;

  const state = $(".bot-state", li);
  if (bot) {
    state.hidden = false;
    state.dataset.state = bot.state;
    state.textContent = botText(bot);
  } else {
    state.hidden = true;
    delete state.dataset.state;
    state.textContent = "";
  }
  const send = $('[data-action="send-bot"]', li);
  const cancel = $('[data-action="cancel-bot"]', li);
  // Keep focus on the button that takes the place of the one being hidden.
  const focused = document.activeElement;
  send.hidden = active;
  cancel.hidden = !active;
  if (focused === send && active) cancel.focus();
  else if (focused === cancel && !active) send.focus();
  const end = $('[data-action="simulate-end"]', li);
  if (end) end.hidden = m.role !== "host";
}

function renderMeeting(uuid) {
  const m = client.meetings.get(uuid);
  const li = items.get(uuid);
  if (!m) {
    if (li) {
      const next = li.nextElementSibling ?? li.previousElementSibling;
      keepFocus(li, next ? $("button:not([hidden])", next) : null);
      li.remove();
      items.delete(uuid);
    }
  } else if (li) {
    updateItem(li, m);
  } else {
    renderList();
    return;
  }
  listEmpty.hidden = items.size > 0;
}

// renderList reconciles the list with client.meetings, newest start first,
// moving existing items only when the order changed (so focus stays).
function renderList() {
  const meetings = [...client.meetings.values()].sort(byStartDesc);
  const live = new Set(meetings.map((m) => m.uuid));
  for (const [uuid, li] of items) {
    if (!live.has(uuid)) {
      keepFocus(li, null);
      li.remove();
      items.delete(uuid);
    }
  }
  let cursor = list.firstElementChild;
  for (const m of meetings) {
    const li = items.get(m.uuid) ?? createItem(m);
    updateItem(li, m);
    if (li === cursor) cursor = cursor.nextElementSibling;
    else list.insertBefore(li, cursor);
  }
  listEmpty.hidden = items.size > 0;
}

// ---- prompts -----------------------------------------------------------------

function wantsPrompt(m) {
  return m && m.role === "host" && m.live !== false && !dismissed.has(m.uuid) && !botFor(m.uuid) && !prompts.has(m.uuid);
}

function showPrompt(m) {
  if (!wantsPrompt(m)) return;
  const id = `p${++nextId}`;
  const send = h("button", { type: "button", class: "btn btn-primary", "data-action": "send-bot" }, "Send bot");
  const el = h(
    "section",
    { class: "prompt", "data-uuid": m.uuid, role: "region", "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-desc` },
    h(
      "div",
      { class: "prompt-body" },
      h("h2", { id: `${id}-title`, class: "prompt-title" }, h("span", { class: "live-dot", "aria-hidden": "true" }), "Your meeting is live"),
      h(
        "p",
        { id: `${id}-desc`, class: "prompt-desc" },
        h("strong", { class: "prompt-topic" }, topicOf(m)),
        m.start_time ? " · started " : null,
        m.start_time ? h("time", { datetime: m.start_time }, formatStart(m.start_time)) : null,
      ),
    ),
    h("div", { class: "prompt-actions" }, send, h("button", { type: "button", class: "btn", "data-action": "dismiss" }, "Dismiss")),
  );
  prompts.set(m.uuid, el);
  promptBox.prepend(el);
  send.focus();
  announce(`Your meeting ${topicOf(m)} is live`);
}

function removePrompt(uuid) {
  const el = prompts.get(uuid);
  if (!el) return;
  prompts.delete(uuid);
  if (el.contains(document.activeElement)) {
    // The next prompt, else this meeting's row, else the list's heading.
    const other = prompts.values().next().value;
    const li = items.get(uuid);
    const target = (other && $('[data-action="send-bot"]', other)) || (li && $("button:not([hidden])", li)) || meetingsTitle;
    el.remove();
    target.focus();
  } else {
    el.remove();
  }
}

function syncPrompts() {
  for (const uuid of [...prompts.keys()]) {
    const m = client.meetings.get(uuid);
    if (!m || botFor(uuid)) removePrompt(uuid);
  }
}

// ---- desktop notifications -----------------------------------------------------

const canNotify = typeof Notification === "function";
const baseTitle = document.title;

function updateNotifyButton() {
  notifyButton.hidden = !(canNotify && Notification.permission === "default");
}

function notify(m) {
  if (!document.hidden) return;
  document.title = `● Live: ${topicOf(m)} · onair`;
  if (!canNotify || Notification.permission !== "granted") return;
  try {
    // The tag makes every open tab show one notification, not one each.
    const n = new Notification("Your meeting is live", { body: topicOf(m), tag: `onair-${m.uuid}` });
    n.onclick = () => {
      window.focus();
      n.close();
    };
  } catch {
    // some browsers allow notifications only from a service worker
  }
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) document.title = baseTitle;
});

// ---- connection state ----------------------------------------------------------

let countdown = 0;

// The connection state last announced to screen readers ("closed:reason" for
// closed), null until the first connection: the page's own initial
// "Connected" is not announced, nor are the countdown's ticks.
let announcedState = null;

function announceConnection(s) {
  let text;
  switch (s.state) {
    case "connected":
      text = "Connected";
      break;
    case "reconnecting":
      // A gap repair reconnects at once; it is no news unless it fails.
      if (s.reason === "resync") return;
      text = "Connection lost, reconnecting";
      break;
    case "offline":
      text = "Offline";
      break;
    case "closed":
      if (s.reason === "client") return; // this page closed it (reloading)
      text = s.reason === "unauthorized" ? "Signed out" : s.reason === "too_many_tabs" ? "Disconnected: too many open tabs" : "Disconnected";
      break;
    default:
      return; // "connecting": a step on the way to one of the above
  }
  const key = s.state === "closed" ? `closed:${s.reason}` : s.state;
  if (announcedState === null && key === "connected") {
    announcedState = key;
    return;
  }
  if (key === announcedState) return;
  announcedState = key;
  connAnnouncer.textContent = text;
}

function showConnection(s) {
  if (reloading) return;
  announceConnection(s);
  clearInterval(countdown);
  connection.dataset.state = s.state;
  reconnectButton.hidden = !(s.state === "reconnecting" || (s.state === "closed" && s.reason === "too_many_tabs"));
  reconnectButton.textContent = s.state === "closed" ? "Try again" : "Retry now";
  switch (s.state) {
    case "connecting":
      connText.textContent = "Connecting…";
      break;
    case "connected":
      connText.textContent = "Connected";
      break;
    case "reconnecting": {
      const tick = () => {
        const left = Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000));
        connText.textContent = left > 0 ? `Reconnecting in ${left} s…` : "Reconnecting…";
      };
      tick();
      countdown = setInterval(tick, 250);
      break;
    }
    case "offline":
      connText.textContent = "Offline";
      break;
    case "closed":
      if (s.reason === "unauthorized") {
        connText.textContent = "Signed out";
        signedOut();
      } else if (s.reason === "too_many_tabs") {
        connText.textContent = "Too many open tabs";
        say("onair is open in too many tabs. Close some of them, then try again.", "error");
      } else {
        connText.textContent = "Disconnected";
      }
      break;
  }
}

let signedOutShown = false;
function signedOut() {
  if (signedOutShown) return;
  signedOutShown = true;
  clearTimeout(statusTimer);
  statusLine.dataset.kind = "error";
  statusLine.replaceChildren("You are signed out. ", h("a", { href: "/" }, "Sign in again"));
}

// ---- another user ------------------------------------------------------------------

// The session now belongs to someone else (signed in as another user in
// another tab), or the socket disagrees with the page about who is signed
// in: reload, so the header never names one user over another's meetings.
const RELOAD_KEY = "onair.reloadedFor";
let reloading = false;

function reloadForUser(user) {
  if (reloading) return;
  reloading = true;
  clearInterval(countdown);
  client.close();
  let last = null;
  try {
    last = JSON.parse(sessionStorage.getItem(RELOAD_KEY) || "null");
  } catch {
    // storage disabled: no loop guard
  }
  if (last && last.user === user && Date.now() - last.at < 10000) {
    // Reloaded for this a moment ago and the page still disagrees: stop
    // here instead of reloading in a loop.
    keepFocus(list, null);
    for (const uuid of [...prompts.keys()]) removePrompt(uuid);
    list.replaceChildren();
    items.clear();
    listEmpty.hidden = false;
    connection.dataset.state = "closed";
    connText.textContent = "Disconnected";
    reconnectButton.hidden = true;
    clearTimeout(statusTimer);
    statusLine.dataset.kind = "error";
    statusLine.replaceChildren("You are signed in as someone else now. ", h("a", { href: "/" }, "Reload the page"));
    return;
  }
  try {
    sessionStorage.setItem(RELOAD_KEY, JSON.stringify({ user, at: Date.now() }));
  } catch {
    // storage full or disabled
  }
  location.reload();
}

client.on("user", (u) => reloadForUser(u.user));

// ---- stream events ---------------------------------------------------------------

client.on("state", showConnection);

client.on("welcome", (w) => {
  welcomes++;
  if (pageUser && w.user && w.user !== pageUser) {
    reloadForUser(w.user);
    return;
  }
  if (reloading) return;
  if (w.resumed) return; // the missed frames follow
  const before = new Set(items.keys());
  apiBots.clear();
  // A snapshot is no news: what it shows is taken as seen, not announced.
  botSeen.clear();
  for (const m of w.meetings) rememberTopic(m);
  for (const b of w.bots) botSeen.set(b.meeting_uuid, botKey(b));
  renderList();
  syncPrompts();
  // Meetings that started while this tab was away (not on the first load).
  if (welcomes > 1) {
    for (const m of w.meetings) if (!before.has(m.uuid)) showPrompt(m);
    refreshSettings();
  }
});

client.on("meeting.started", (m) => {
  rememberTopic(m);
  renderMeeting(m.uuid);
  if (m.role === "host") {
    showPrompt(m);
    notify(m);
  }
});

client.on("meeting.joined", (m) => {
  rememberTopic(m);
  renderMeeting(m.uuid);
});

for (const type of ["meeting.ended", "meeting.left"]) {
  client.on(type, (m) => {
    if (m.topic) rememberTopic(m);
    // A bot update after the end (e.g. the bot left) is news again.
    botSeen.delete(m.uuid);
    apiBots.delete(m.uuid);
    removePrompt(m.uuid);
    renderMeeting(m.uuid);
  });
}

client.on("bot.updated", (bot) => {
  const uuid = bot.meeting_uuid;
  // An older request's late update, while a newer one is shown: not news.
  const shown = botFor(uuid);
  const stale = !!shown && shown.request_id !== bot.request_id && (Date.parse(shown.updated_at) || 0) > (Date.parse(bot.updated_at) || 0);
  if (apiBots.get(uuid)?.request_id === bot.request_id) apiBots.delete(uuid);
  removePrompt(uuid);
  renderMeeting(uuid);
  if (!stale) announceBot(bot);
});

// announceBot tells screen readers (and shows in the status line) a bot state
// change pushed by the server: cancelled in another tab or because the
// meeting ended, dispatched, joining, joined, left, failed. Changes this tab
// made itself are said by sendBot and cancelBot instead.
function announceBot(bot) {
  const uuid = bot.meeting_uuid;
  const key = botKey(bot);
  if (botSeen.get(uuid) === key) return;
  botSeen.set(uuid, key);
  if (bot.state === "requested" && isPending("send-bot", uuid)) return;
  if (bot.state === "cancelled" && isPending("cancel-bot", uuid)) return;
  const m = client.meetings.get(uuid);
  const topic = m ? topicOf(m) : (topics.get(uuid) ?? "your meeting");
  if (bot.state === "failed") {
    say(bot.detail ? `Bot for ${topic} failed: ${bot.detail}` : `Bot for ${topic}: failed`, "error");
  } else {
    say(`Bot for ${topic}: ${bot.state}`);
  }
}

// ---- actions ------------------------------------------------------------------------

async function sendBot(uuid) {
  if (isPending("send-bot", uuid)) return;
  const topic = topicOf(client.meetings.get(uuid));
  setPending("send-bot", uuid, true);
  try {
    const data = await api("POST", meetingPath(uuid));
    if (data && data.bot) {
      apiBots.set(uuid, data.bot);
      botSeen.set(uuid, botKey(botFor(uuid)));
    }
    removePrompt(uuid);
    renderMeeting(uuid);
    say(`Bot requested for ${topic}.`);
  } catch (err) {
    if (err.status === 404) removePrompt(uuid);
    say(`Could not send the bot to ${topic}: ${err.message}`, "error");
  } finally {
    setPending("send-bot", uuid, false);
  }
}

async function cancelBot(uuid) {
  if (isPending("cancel-bot", uuid)) return;
  const topic = topicOf(client.meetings.get(uuid));
  setPending("cancel-bot", uuid, true);
  try {
    const data = await api("DELETE", meetingPath(uuid));
    if (data && data.bot) {
      apiBots.set(uuid, data.bot);
      botSeen.set(uuid, botKey(botFor(uuid)));
    }
    renderMeeting(uuid);
    say(`Bot cancelled for ${topic}.`);
  } catch (err) {
    say(`Could not cancel the bot for ${topic}: ${err.message}`, "error");
  } finally {
    setPending("cancel-bot", uuid, false);
  }
}

function dismiss(uuid) {
  rememberDismissed(uuid);
  removePrompt(uuid);
}

async function enableNotifications() {
  if (!canNotify) return;
  try {
    const result = await Notification.requestPermission();
    if (result === "denied") say("Desktop notifications are blocked for this site in your browser's settings.", "error");
    else if (result === "granted") say("Desktop notifications are on.");
  } catch {
    // very old browsers: callback form only
  }
  updateNotifyButton();
}

// ---- auto-send setting -----------------------------------------------------------------

let settingInFlight = false;

autoSend.addEventListener("change", async () => {
  const wanted = autoSend.checked;
  settingInFlight = true;
  autoSend.disabled = true;
  try {
    const data = await api("PUT", "/api/v1/me/settings", { auto_send_bot: wanted });
    autoSend.checked = !!(data && data.user ? data.user.auto_send_bot : wanted);
    say(autoSend.checked ? "The bot will be sent automatically when your meeting starts." : "The bot will no longer be sent automatically.");
  } catch (err) {
    autoSend.checked = !wanted;
    say(`Could not save the setting: ${err.message}`, "error");
  } finally {
    settingInFlight = false;
    autoSend.disabled = false;
    autoSend.focus();
  }
});

// The setting may have been changed in another tab meanwhile.
async function refreshSettings() {
  try {
    const data = await api("GET", "/api/v1/me");
    if (!settingInFlight && data && data.user) autoSend.checked = !!data.user.auto_send_bot;
  } catch {
    // shown by the next action that needs it
  }
}

// ---- simulate (dev mode) ------------------------------------------------------------------

let simulateTimer = 0;
function simulateSay(message, kind = "info") {
  clearTimeout(simulateTimer);
  simulateOutcome.textContent = message;
  simulateOutcome.dataset.kind = kind;
  simulateTimer = setTimeout(() => {
    simulateOutcome.textContent = "";
  }, 8000);
}

const simulateStart = simulateForm && $('[data-action="simulate-start"]', simulateForm);

async function simulate(event, uuid, topic) {
  const key = uuid ?? "new";
  const action = event === "started" ? "simulate-start" : "simulate-end";
  if (isPending(action, key)) return;
  const body = { event };
  if (uuid) body.meeting = uuid;
  if (topic) body.topic = topic;
  // Named now: the meeting may be gone from the list before the answer comes.
  const what = event === "started" ? `Started “${topic || "meeting"}”` : `Ended “${topicOf(client.meetings.get(uuid))}”`;
  setPending(action, key, true);
  if (!uuid) simulateStart.setAttribute("aria-disabled", "true");
  try {
    const data = await api("POST", "/api/v1/dev/simulate", body);
    simulateSay(`${what}: ${data?.outcome ?? "sent"}.`);
  } catch (err) {
    simulateSay(`Simulate ${event} failed: ${err.message}`, "error");
  } finally {
    setPending(action, key, false);
    if (!uuid) simulateStart.setAttribute("aria-disabled", "false");
  }
}

if (simulateForm) {
  simulateForm.addEventListener("submit", (e) => {
    e.preventDefault();
    simulate("started", null, simulateTopic.value.trim() || "Demo meeting");
  });
}

// ---- clicks and keys -------------------------------------------------------------------------

main.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-action]");
  if (!button || button.getAttribute("aria-disabled") === "true") return;
  const uuid = button.closest("[data-uuid]")?.dataset.uuid;
  switch (button.dataset.action) {
    case "send-bot":
      if (uuid) sendBot(uuid);
      break;
    case "cancel-bot":
      if (uuid) cancelBot(uuid);
      break;
    case "dismiss":
      if (uuid) dismiss(uuid);
      break;
    case "simulate-end":
      if (uuid) simulate("ended", uuid);
      break;
    case "reconnect":
      client.reconnect();
      break;
    case "enable-notifications":
      enableNotifications();
      break;
  }
});

promptBox.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  const uuid = e.target.closest(".prompt")?.dataset.uuid;
  if (uuid) {
    e.preventDefault();
    dismiss(uuid);
  }
});

updateNotifyButton();
renderList();
