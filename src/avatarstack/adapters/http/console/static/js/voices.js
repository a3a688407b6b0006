// The avatar panel's "Voice" and "Language" choices, from GET /api/v1/avatar/voices
// ({provider, voices: [{id, name, language, gender}], languages: [code]}). Each select shows only
// when the provider offers a choice (the text avatar offers none). "Default voice" / "Default
// language" come first and send nothing, so the avatar's own voice and the vendor's default
// language apply. Voices are grouped by their language; choosing a language keeps the voices of
// that language (all of them when none matches, since vendors name a voice's language in their
// own words: "en" or "English").

import { api } from "./api.js";
import { field, h, replace } from "./dom.js";

const CODE = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/;

function displayNames(locale) {
  try {
    return new Intl.DisplayNames([locale], { type: "language" });
  } catch {
    return null;
  }
}
const localNames = displayNames(navigator.language || "en");
const englishNames = displayNames("en");

function nameOf(names, code) {
  try {
    return names?.of(code) || null;
  } catch {
    return null; // not a code Intl accepts
  }
}

/** "German (de)" for a code the browser knows, else the code itself. */
export function languageName(code) {
  const name = nameOf(localNames, code);
  return name && name !== code ? `${name} (${code})` : code;
}

/** Whether a voice whose language the vendor calls `label` speaks the language `code`. */
function speaks(label, code) {
  const spoken = String(label || "").toLowerCase();
  const wanted = code.toLowerCase();
  const primary = wanted.split("-")[0];
  if (spoken === wanted || spoken === primary || spoken.startsWith(`${primary}-`)) return true;
  const name = nameOf(englishNames, primary); // HeyGen names a voice's language "German"
  return Boolean(name) && spoken === name.toLowerCase();
}

export function createVoiceChoice(alert) {
  const voice = field("Voice", { name: "voice" }, "select");
  const language = field("Language", { name: "language" }, "select");
  voice.wrap.hidden = true;
  language.wrap.hidden = true;
  let voices = [];

  function renderVoices() {
    const code = language.control.value;
    const matching = code ? voices.filter((v) => speaks(v.language, code)) : voices;
    const shown = matching.length ? matching : voices;
    const chosen = voice.control.value;
    const groups = new Map();
    for (const item of shown) {
      const key = item.language || "Other";
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(item);
    }
    replace(
      voice.control,
      h("option", { value: "", text: "Default voice" }),
      [...groups.entries()].map(([key, items]) =>
        h(
          "optgroup",
          { label: CODE.test(key) ? languageName(key) : key },
          items.map((item) =>
            h("option", { value: item.id, text: item.gender ? `${item.name} (${item.gender})` : item.name }),
          ),
        ),
      ),
    );
    voice.control.value = shown.some((v) => v.id === chosen) ? chosen : "";
  }

  language.control.addEventListener("change", renderVoices);

  async function load() {
    let listing;
    try {
      listing = await api("avatar/voices");
    } catch (error) {
      alert.show(error);
      return;
    }
    voices = Array.isArray(listing.voices) ? listing.voices : [];
    const languages = Array.isArray(listing.languages) ? listing.languages : [];
    replace(
      language.control,
      h("option", { value: "", text: "Default language" }),
      languages.map((code) => h("option", { value: code, text: languageName(code) })),
    );
    renderVoices();
    voice.wrap.hidden = voices.length === 0;
    language.wrap.hidden = languages.length === 0;
  }

  /** What avatar.start sends: the chosen voice_id and language (nothing for the defaults). */
  function chosen() {
    const data = {};
    if (!voice.wrap.hidden && voice.control.value) data.voice_id = voice.control.value;
    if (!language.wrap.hidden && language.control.value) data.language = language.control.value;
    return data;
  }

  // the language first: it narrows the voices
  return { els: [language.wrap, voice.wrap], load, chosen };
}
