// The microphone button. With a LiveKit avatar the user's microphone joins the room (the avatar
// hears it and the server turns its transcriptions into user messages). Without a video
// provider the browser's own speech recognition is used, where it exists; elsewhere the button
// stays hidden. The button's aria-pressed says whether the microphone is on.

import { h } from "./dom.js";

export function createMicrophone({ usesLiveKit, onFinal, onError }) {
  const Recognition = window.SpeechRecognition || window.webkitSpeechRecognition;
  const button = h("button", { type: "button", "aria-pressed": "false", text: "Microphone" });
  let room = null;
  let on = false;
  let recognition = null;

  const show = (pressed) => {
    on = pressed;
    button.setAttribute("aria-pressed", String(pressed));
  };

  if (usesLiveKit) {
    button.disabled = true; // until the avatar's room is joined
  } else if (!Recognition) {
    button.hidden = true;
  }

  async function toggleRoom() {
    const next = !on;
    try {
      await room.localParticipant.setMicrophoneEnabled(next);
      show(next);
    } catch (error) {
      onError(`The microphone could not be ${next ? "switched on" : "switched off"}: ${error?.message || error}`);
    }
  }

  function startRecognition() {
    recognition = new Recognition();
    recognition.lang = document.documentElement.lang || "en";
    recognition.continuous = true;
    recognition.interimResults = false;
    recognition.addEventListener("result", (event) => {
      for (let i = event.resultIndex; i < event.results.length; i += 1) {
        const result = event.results[i];
        const text = result[0]?.transcript?.trim();
        if (result.isFinal && text) onFinal(text);
      }
    });
    recognition.addEventListener("error", (event) => {
      if (event.error !== "no-speech" && event.error !== "aborted") onError(`Voice input stopped: ${event.error}.`);
    });
    recognition.addEventListener("end", () => {
      recognition = null;
      show(false);
    });
    recognition.start();
    show(true);
  }

  button.addEventListener("click", () => {
    if (usesLiveKit) {
      if (room) toggleRoom();
    } else if (on) {
      recognition?.stop();
    } else {
      try {
        startRecognition();
      } catch (error) {
        onError(`Voice input is not available: ${error?.message || error}`);
      }
    }
  });

  return {
    button,
    setRoom(next) {
      room = next;
      if (usesLiveKit) {
        button.disabled = !next;
        if (!next) show(false);
      }
    },
    stop() {
      recognition?.abort();
      if (room && on) room.localParticipant.setMicrophoneEnabled(false).catch(() => {});
      show(false);
    },
  };
}
