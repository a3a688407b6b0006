// The avatar panel of the chat page: choose (with its voice and language, where the provider
// offers them: voices.js) and start/stop the conversation's avatar, its
// state ("Speaking" / "Idle") with captions from avatar.speaking {text}, and, for providers that
// stream video, the LiveKit room: the page joins it with the credentials the server sends
// (avatar.credentials), attaches itself (avatar.attach) so the server can relay the avatar's
// commands (avatar.command → published on the data channel, topic agent-control) and forwards
// the avatar's agent-response packets back (avatar.event). When the LiveKit module cannot be
// loaded or the room fails, the panel falls back to a text-only state; the chat keeps working.

import { api } from "./api.js";
import { alertBox, field, h, replace } from "./dom.js";
import { createMicrophone } from "./voice.js";
import { createVoiceChoice } from "./voices.js";

const CONTROL_TOPIC = "agent-control";
const RESPONSE_TOPIC = "agent-response";
// the longest a renewal waits for the end of an utterance: the server has already stopped the
// replaced session, so its room has nothing more to say
const RENEWAL_WAIT_MS = 15000;
const QUALITY_TEXT = { excellent: "Excellent", good: "Good", poor: "Poor", lost: "Lost", unknown: "Unknown" };

export function createAvatarPanel(ctx, { ensureConversation, sendTranscript }) {
  const realtime = ctx.realtime;
  const usesLiveKit = ctx.config.voice_input === "livekit";
  const alert = alertBox();
  const choice = field("Avatar", { name: "avatar" }, "select");
  const voices = createVoiceChoice(alert);
  const start = h("button", { type: "button", class: "primary", text: "Start avatar" });
  const stop = h("button", { type: "button", text: "Stop avatar", disabled: true });
  const stage = h("div", { class: "avatar-stage" }, h("p", { text: "The avatar is not started." }));
  const audio = h("audio", { autoplay: true, hidden: true });
  const mode = h("p", { class: "muted", "data-testid": "avatar-mode", text: "" });
  const state = h("span", { class: "avatar-state", "data-testid": "avatar-state", text: "Not started" });
  const quality = h("span", { "data-testid": "avatar-quality", text: "–" });
  const qualityLine = h("p", { hidden: true }, "Video connection: ", quality);
  const captions = h("div", {
    class: "captions",
    role: "region",
    "aria-live": "polite",
    "aria-label": "Captions",
    "data-testid": "captions",
  });
  const mic = createMicrophone({ usesLiveKit, onFinal: (text) => sendTranscript(text), onError: (e) => alert.show(e) });

  const el = h(
    "aside",
    { class: "avatar-panel card" },
    h("h2", { id: "avatar-title", text: "Avatar" }),
    alert.el,
    choice.wrap,
    ...voices.els,
    h("div", { class: "actions" }, start, stop, mic.button),
    stage,
    audio,
    mode,
    h("p", {}, "State: ", state),
    qualityLine,
    h("h3", { id: "captions-title", text: "Captions" }),
    captions,
  );

  let sessionId = null;
  let speaking = false;
  let room = null;
  let roomSession = null;
  let live = false; // the room is connected: commands can be published
  let pendingCredentials = null;
  let renewalTimer = null;
  let pendingStart = false;
  const queuedCommands = [];

  // with a video provider, Start stays available until this page is in the room: after a reload
  // only starting again (which reuses the running avatar) sends this page its credentials
  const syncButtons = () => {
    start.disabled = Boolean(sessionId) && (!usesLiveKit || live);
    stop.disabled = !sessionId;
  };
  const setState = (text, isSpeaking) => {
    speaking = isSpeaking;
    state.textContent = text;
    state.classList.toggle("speaking", isSpeaking);
  };
  const setMode = (text) => {
    mode.textContent = text;
  };
  const textOnly = (reason) => {
    setMode(reason);
    replace(stage, h("p", { text: "Text-only avatar: follow its words in the captions." }));
    qualityLine.hidden = true;
    mic.setRoom(null);
  };
  const setQuality = (value) => {
    quality.textContent = QUALITY_TEXT[value] || String(value);
    quality.className = `quality-${value}`;
  };

  loadAvatars(choice.control, alert);
  voices.load();

  start.addEventListener("click", async () => {
    alert.clear();
    if (!ensureConversation()) {
      pendingStart = true; // sent once the new conversation is open
      return;
    }
    sendStart();
  });
  stop.addEventListener("click", () => {
    alert.clear();
    if (!realtime.send("avatar.stop", {})) alert.show("Not connected: try again when the connection is back.");
  });

  function sendStart() {
    pendingStart = false;
    const data = voices.chosen();
    if (choice.control.value) data.avatar_id = choice.control.value;
    // "Default voice": the chosen avatar's own voice
    const voice = choice.control.selectedOptions[0]?.dataset.voice;
    if (voice && !data.voice_id) data.voice_id = voice;
    if (!realtime.send("avatar.start", data)) alert.show("Not connected: try again when the connection is back.");
    else if (!sessionId) setState("Starting…", false);
  }

  async function join(credentials) {
    const livekit = credentials.livekit;
    if (!livekit?.url || !livekit?.access_token) return;
    let lk;
    try {
      lk = await import(ctx.config.livekit_client_url);
    } catch {
      textOnly("Video is unavailable (the LiveKit client could not be loaded): text-only avatar.");
      return;
    }
    try {
      const next = new lk.Room({ adaptiveStream: true, dynacast: true });
      next.on(lk.RoomEvent.TrackSubscribed, (track) => attachTrack(track));
      next.on(lk.RoomEvent.TrackUnsubscribed, (track) => track.detach());
      next.on(lk.RoomEvent.DataReceived, (payload, participant, kind, topic) => received(payload, topic));
      next.on(lk.RoomEvent.ConnectionQualityChanged, (value) => setQuality(value));
      next.on(lk.RoomEvent.Reconnecting, () => setMode("Video: reconnecting…"));
      next.on(lk.RoomEvent.Reconnected, () => setMode("Video: connected."));
      next.on(lk.RoomEvent.Disconnected, () => {
        if (room !== next) return;
        room = null;
        roomSession = null;
        live = false;
        mic.setRoom(null);
        setMode("Video: disconnected.");
      });
      room = next;
      roomSession = credentials.session_id;
      live = false;
      await next.connect(livekit.url, livekit.access_token);
      if (room !== next) return;
      live = true;
      qualityLine.hidden = false;
      syncButtons();
      setMode("Video: connected.");
      mic.setRoom(next);
      realtime.send("avatar.attach", { session_id: roomSession });
      // commands that came before the room was joined, in order; those of other rooms are dropped
      for (const data of queuedCommands.splice(0)) if (data.session_id === roomSession) publish(data);
    } catch (error) {
      room = null;
      roomSession = null;
      live = false;
      textOnly(`Video is unavailable (${error?.message || "the room refused the connection"}): text-only avatar.`);
    }
  }

  function attachTrack(track) {
    if (track.kind === "video") {
      const video = h("video", { autoplay: true, playsinline: true, "aria-label": "Video" });
      replace(stage, video);
      track.attach(video);
    } else if (track.kind === "audio") {
      track.attach(audio);
    }
  }

  /** Leave the room; `detach` false keeps the server's attachment (a renewal of the same
   * session: the server already points it at the new room). */
  async function leaveRoom(detach = true) {
    const old = room;
    const oldSession = roomSession;
    room = null;
    roomSession = null;
    live = false;
    mic.setRoom(null);
    if (oldSession && detach) realtime.send("avatar.detach", { session_id: oldSession });
    if (old) await old.disconnect().catch(() => {});
  }

  /** A renewal switches rooms between utterances: now when idle, else at the next idle (or
   * after RENEWAL_WAIT_MS at the latest, `force`). */
  async function switchIfIdle(force = false) {
    if (!pendingCredentials || (speaking && !force)) return;
    clearTimeout(renewalTimer);
    renewalTimer = null;
    const credentials = pendingCredentials;
    pendingCredentials = null;
    await leaveRoom(credentials.session_id !== roomSession);
    await join(credentials);
  }

  /** Publish a command on the room's data channel; while the room is being joined or a
   * renewal waits for the avatar to be idle, commands of this avatar wait for the new room. */
  function publish(data) {
    const ours = data.session_id === sessionId || data.session_id === roomSession || data.session_id === pendingCredentials?.session_id;
    if (!ours) return;
    if (!live || pendingCredentials) {
      queuedCommands.push(data);
      return;
    }
    const bytes = new TextEncoder().encode(JSON.stringify(data.command));
    room.localParticipant
      .publishData(bytes, { reliable: true, topic: data.topic || CONTROL_TOPIC })
      .catch((error) => alert.show(`The avatar did not get a command: ${error?.message || error}`));
  }

  function received(payload, topic) {
    if (topic !== RESPONSE_TOPIC || !roomSession) return;
    let event;
    try {
      event = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return;
    }
    if (event && typeof event === "object") realtime.send("avatar.event", { session_id: roomSession, event });
  }

  function handle(frame) {
    const data = frame.data || {};
    switch (frame.type) {
      case "conversation.opened":
        if (pendingStart) sendStart();
        if (roomSession) realtime.send("avatar.attach", { session_id: roomSession }); // after a reconnect
        break;
      case "avatar.session":
        if (data.status !== "active" && sessionId && data.session_id !== sessionId) break; // an older one
        sessionId = data.status === "active" ? data.session_id : null;
        syncButtons();
        if (sessionId) {
          if (!speaking) setState("Idle", false);
          if (!usesLiveKit) textOnly("Text-only avatar: no video with this provider.");
        } else {
          setState("Not started", false);
          pendingCredentials = null;
          queuedCommands.length = 0;
          leaveRoom();
          replace(stage, h("p", { text: "The avatar is not started." }));
          setMode("");
        }
        break;
      case "avatar.speaking":
        setState("Speaking", true);
        if (data.text) captions.textContent = data.text;
        break;
      case "avatar.idle":
        setState("Idle", false);
        switchIfIdle();
        break;
      case "avatar.credentials":
        if (data.renewed && room) {
          pendingCredentials = data;
          switchIfIdle();
          if (pendingCredentials && !renewalTimer) {
            renewalTimer = setTimeout(() => {
              renewalTimer = null;
              switchIfIdle(true);
            }, RENEWAL_WAIT_MS);
          }
        } else if (!room) {
          join(data);
        }
        break;
      case "avatar.command":
        publish(data);
        break;
      default:
        break;
    }
  }

  function destroy() {
    clearTimeout(renewalTimer);
    mic.stop();
    leaveRoom();
  }

  return { el, handle, destroy };
}

async function loadAvatars(select, alert) {
  let listing;
  try {
    listing = await api("avatar/avatars");
  } catch (error) {
    alert.show(error);
    return;
  }
  replace(
    select,
    (listing.avatars || []).map((avatar) =>
      h("option", { value: avatar.id, "data-voice": avatar.default_voice_id || null, text: avatar.name || avatar.id }),
    ),
  );
  if (!select.options.length) select.append(h("option", { value: "", text: "Default avatar" }));
}
