// A recording test double of the livekit-client ES module, for the browser suite only.
//
// It implements exactly the client surface the console uses (see docs/console.md): Room with
// on/off, connect, disconnect, localParticipant.publishData and setMicrophoneEnabled, the
// RoomEvent and ConnectionQuality names, and tracks with attach/detach. Nothing leaves the page.
// Everything the page does is recorded on window.__livekitDouble:
//   connects:    [{url, token, options}]      every room.connect()
//   disconnects: number                        every room.disconnect()
//   published:   [{topic, reliable, text, json}] every publishData() (json: parsed, or null)
//   microphone:  [true|false, ...]             every setMicrophoneEnabled()
//   receive(obj, topic = "agent-response")    simulates a data packet from the avatar agent
//   quality(value)                             simulates a connection-quality change
// After connect() the avatar participant "publishes" a video and an audio track (a canvas
// stream and a silent audio stream), so the page attaches them as it would real media.

export const RoomEvent = Object.freeze({
  TrackSubscribed: "trackSubscribed",
  TrackUnsubscribed: "trackUnsubscribed",
  DataReceived: "dataReceived",
  ConnectionQualityChanged: "connectionQualityChanged",
  Disconnected: "disconnected",
  Reconnecting: "reconnecting",
  Reconnected: "reconnected",
  Connected: "connected",
  ParticipantConnected: "participantConnected",
  ParticipantDisconnected: "participantDisconnected",
});

export const ConnectionQuality = Object.freeze({
  Excellent: "excellent",
  Good: "good",
  Poor: "poor",
  Lost: "lost",
  Unknown: "unknown",
});

export const DataPacket_Kind = Object.freeze({ LOSSY: 0, RELIABLE: 1 });
export const Track = Object.freeze({ Kind: Object.freeze({ Audio: "audio", Video: "video" }) });

const record = (window.__livekitDouble = {
  connects: [],
  disconnects: 0,
  published: [],
  microphone: [],
  rooms: [],
  room: null,
  receive(obj, topic = "agent-response") {
    const room = record.room;
    if (!room) throw new Error("livekit double: no connected room");
    const payload = new TextEncoder().encode(JSON.stringify(obj));
    room._emit(RoomEvent.DataReceived, payload, room._avatar, DataPacket_Kind.RELIABLE, topic);
  },
  quality(value) {
    const room = record.room;
    if (!room) throw new Error("livekit double: no connected room");
    room._emit(RoomEvent.ConnectionQualityChanged, value, room.localParticipant);
  },
});

function mediaStream(kind) {
  if (kind === "video") {
    const canvas = document.createElement("canvas");
    canvas.width = 64;
    canvas.height = 64;
    const paint = canvas.getContext("2d");
    paint.fillStyle = "#445";
    paint.fillRect(0, 0, 64, 64);
    return canvas.captureStream ? canvas.captureStream(5) : null;
  }
  const AudioContextClass = window.AudioContext || window.webkitAudioContext;
  if (!AudioContextClass) return null;
  const context = new AudioContextClass();
  return context.createMediaStreamDestination().stream;
}

class DoubleTrack {
  constructor(kind) {
    this.kind = kind;
    this.sid = `TR_${kind}`;
    this.attachedElements = [];
    this.mediaStream = mediaStream(kind);
  }

  attach(element) {
    const target = element || document.createElement(this.kind === "video" ? "video" : "audio");
    if (this.mediaStream) target.srcObject = this.mediaStream;
    this.attachedElements.push(target);
    return target;
  }

  detach(element) {
    const removed = element ? [element] : this.attachedElements.slice();
    for (const el of removed) {
      el.srcObject = null;
      this.attachedElements = this.attachedElements.filter((e) => e !== el);
    }
    return element || removed;
  }
}

class LocalParticipant {
  constructor() {
    this.identity = "console-user";
    this.isMicrophoneEnabled = false;
  }

  async publishData(payload, options = {}) {
    const text = new TextDecoder().decode(payload);
    let parsed = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
    record.published.push({
      topic: options.topic ?? null,
      reliable: options.reliable ?? null,
      text,
      json: parsed,
    });
  }

  async setMicrophoneEnabled(enabled) {
    this.isMicrophoneEnabled = Boolean(enabled);
    record.microphone.push(Boolean(enabled));
  }
}

export class Room {
  constructor(options = {}) {
    this.options = options;
    this.state = "disconnected";
    this.localParticipant = new LocalParticipant();
    this.remoteParticipants = new Map();
    this._listeners = new Map();
    this._avatar = { identity: "avatar-agent", isAgent: true };
    this._tracks = [];
    record.rooms.push(this);
  }

  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, []);
    this._listeners.get(event).push(listener);
    return this;
  }

  off(event, listener) {
    const listeners = this._listeners.get(event) || [];
    this._listeners.set(
      event,
      listeners.filter((l) => l !== listener),
    );
    return this;
  }

  once(event, listener) {
    const wrapped = (...args) => {
      this.off(event, wrapped);
      listener(...args);
    };
    return this.on(event, wrapped);
  }

  removeAllListeners(event) {
    if (event === undefined) this._listeners.clear();
    else this._listeners.delete(event);
    return this;
  }

  _emit(event, ...args) {
    for (const listener of (this._listeners.get(event) || []).slice()) listener(...args);
  }

  async connect(url, token, options) {
    record.connects.push({ url, token, options: options ?? null });
    this.state = "connected";
    record.room = this;
    this.remoteParticipants.set(this._avatar.identity, this._avatar);
    this._emit(RoomEvent.Connected);
    setTimeout(() => {
      if (this.state !== "connected") return;
      for (const kind of ["video", "audio"]) {
        const track = new DoubleTrack(kind);
        this._tracks.push(track);
        const publication = { trackSid: track.sid, kind, track };
        this._emit(RoomEvent.TrackSubscribed, track, publication, this._avatar);
      }
      this._emit(RoomEvent.ConnectionQualityChanged, ConnectionQuality.Excellent, this.localParticipant);
    }, 0);
  }

  async disconnect() {
    if (this.state === "disconnected") return;
    record.disconnects += 1;
    this.state = "disconnected";
    for (const track of this._tracks) this._emit(RoomEvent.TrackUnsubscribed, track, null, this._avatar);
    this._tracks = [];
    if (record.room === this) record.room = null;
    this._emit(RoomEvent.Disconnected, "CLIENT_INITIATED");
  }
}
