// The realtime client (WebSocket protocol v1, docs/realtime.md). One socket per page: it
// authenticates with the in-memory access token, re-authenticates when the token is renewed,
// reconnects with exponential backoff and jitter, and resumes the open conversation exactly
// after the last stored event it delivered (after_seq). Typed messages wait in an outbox with
// their client_id until the server's message.created echoes it, so a message whose send is
// unsure is sent again with the same client_id after a reconnect (the server stores it once).
//
// Events (EventTarget): "state" {detail: "connecting"|"connected"|"reconnecting"|"offline"},
// "frame" {detail: frame} for every frame except stored events already delivered,
// "ended" {detail: {code}} when the session is over (revoked or signed out).

import { onAuthChange, refreshSession, token } from "./api.js";

const PATH = "/api/v1/ws";
const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
const PING_EVERY_MS = 20000;
const PONG_WITHIN_MS = 10000;

export class Realtime extends EventTarget {
  constructor() {
    super();
    this.state = "connecting";
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.stopped = false;
    this.ready = false;
    this.conversationId = undefined; // undefined: none; null: start a new one
    this.lastSeq = 0;
    this.opened = false;
    this.outbox = new Map(); // client_id -> text
    this.frameId = 0;
    this.unsubscribe = onAuthChange(() => this.reauthenticate());
    this.onOnline = () => this.reconnectNow();
    this.onOffline = () => this.setState("offline");
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stopTimers();
    this.unsubscribe();
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    if (this.socket) this.socket.close(1000, "page closed");
    this.socket = null;
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  connect() {
    if (this.stopped || !token()) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${PATH}`, "avatarstack.v1");
    this.socket = socket;
    this.ready = false;
    this.opened = false;
    socket.addEventListener("open", () => this.rawSend("auth", { token: token() }));
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", (event) => this.closed(socket, event.code));
  }

  closed(socket, code) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.ready = false;
    this.opened = false;
    this.stopTimers();
    if (this.stopped) return;
    if (code === 4403) {
      this.setState("offline");
      this.dispatchEvent(new CustomEvent("ended", { detail: { code } }));
      return;
    }
    if (code === 4401) {
      // the access token expired or was refused: renew it through the cookie, then resume
      refreshSession().then(
        (ok) => (ok ? this.schedule(0) : this.endSession(code)),
        () => this.schedule(),
      );
      this.setState("reconnecting");
      return;
    }
    this.setState(navigator.onLine === false ? "offline" : "reconnecting");
    this.schedule(code === 4008 || code === 1001 ? 0 : undefined);
  }

  endSession(code) {
    this.setState("offline");
    this.dispatchEvent(new CustomEvent("ended", { detail: { code } }));
  }

  /** Next attempt after an exponential delay with full jitter (or `delay` ms). */
  schedule(delay) {
    clearTimeout(this.timer);
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt);
    const wait = delay ?? Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), wait);
  }

  reconnectNow() {
    if (this.socket || this.stopped) return;
    this.attempt = 0;
    this.schedule(0);
  }

  reauthenticate() {
    if (!token()) return;
    if (this.ready) this.rawSend("auth", { token: token() });
    else if (!this.socket && !this.stopped) this.reconnectNow();
  }

  stopTimers() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  /** Detect a silently dead connection: ping, and give up on it when nothing comes back. */
  startPings(socket) {
    this.stopTimers();
    this.pingTimer = setInterval(() => {
      this.rawSend("ping", {});
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => socket.close(4000, "no answer"), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  rawSend(type, data) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.frameId += 1;
    this.socket.send(JSON.stringify({ type, id: `c${this.frameId}`, data }));
    return true;
  }

  /** Send a frame now; false when the socket is not ready (nothing is queued). */
  send(type, data = {}) {
    return this.ready && this.rawSend(type, data);
  }

  /** Open a conversation (null: a new one) from its start; resumes after reconnects. */
  open(conversationId) {
    this.conversationId = conversationId;
    this.lastSeq = 0;
    this.opened = false;
    this.outbox.clear();
    this.sendOpen();
  }

  /** Stop following the conversation (the socket stays for job progress). */
  leave() {
    this.conversationId = undefined;
    this.outbox.clear();
  }

  sendOpen() {
    if (!this.ready || this.conversationId === undefined) return;
    const data = { after_seq: this.lastSeq };
    if (this.conversationId) data.conversation_id = this.conversationId;
    this.rawSend("conversation.open", data);
  }

  /** Queue a user message; it is sent now if possible and again after a reconnect until echoed. */
  sendMessage(text) {
    const clientId = crypto.randomUUID ? crypto.randomUUID() : `m${Date.now()}${Math.random()}`;
    this.outbox.set(clientId, text);
    if (this.opened) this.rawSend("user.message", { client_id: clientId, text });
    return clientId;
  }

  flushOutbox() {
    for (const [clientId, text] of this.outbox) {
      this.rawSend("user.message", { client_id: clientId, text });
    }
  }

  receive(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    clearTimeout(this.pongTimer);
    const { type } = frame;
    if (type === "ready") {
      const first = !this.ready;
      this.ready = true;
      this.attempt = 0;
      this.setState("connected");
      if (first) {
        this.startPings(this.socket);
        this.sendOpen();
      }
    } else if (type === "conversation.opened") {
      // the answer to an earlier open (the page switched since) is not this conversation's
      if (this.conversationId === undefined) return;
      if (this.conversationId !== null && this.conversationId !== frame.conversation_id) return;
      this.conversationId = frame.conversation_id;
      this.opened = true;
      this.flushOutbox();
    } else if (typeof frame.seq === "number") {
      if (frame.conversation_id !== this.conversationId) return;
      if (frame.seq <= this.lastSeq) return; // already delivered: no duplicates after a resume
      this.lastSeq = frame.seq;
      if (type === "message.created") this.outbox.delete(frame.data?.client_id);
    } else if (type === "error" && frame.data?.code === "slow-consumer") {
      if (typeof frame.data.after_seq === "number") this.lastSeq = frame.data.after_seq;
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }
}
