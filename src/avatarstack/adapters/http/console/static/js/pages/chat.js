// The conversation page: the list of past conversations, the messages with the streamed answer
// (answer.delta) and its citations, interrupt, the connection state and the avatar panel.
// Events come from the app's realtime client, which resumes after the last seq it delivered,
// so each stored event is shown once; an answer's text is rebuilt from its deltas by seq.

import { api } from "../api.js";
import { createAvatarPanel } from "../avatar.js";
import { alertBox, field, h, replace, when } from "../dom.js";

const STATE_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

export async function render(main, ctx) {
  const realtime = ctx.realtime;
  const conversationId = location.pathname.startsWith("/chat/") ? decodeURIComponent(location.pathname.slice(6)) : null;
  const alert = alertBox();
  const titles = new Map(); // document_id -> title
  const answers = new Map(); // reply_to seq -> answer view
  const pending = new Map(); // client_id -> message element
  let titlesLoaded = null;

  const list = h("ul", {});
  // folded on narrow screens, so the chat comes first on a phone
  const fold = h(
    "details",
    { open: window.matchMedia("(min-width: 64rem)").matches },
    h("summary", {}, h("h2", { text: "Conversations" })),
    h("a", { href: "/chat", class: "new", text: "New conversation" }),
    list,
  );
  const conversations = h("nav", { class: "conversations card", "aria-label": "Conversations" }, fold);
  const connection = h("span", {
    class: `connection ${realtime.state}`,
    role: "status",
    "aria-label": "Connection",
    text: STATE_TEXT[realtime.state],
  });
  const messages = h("div", { class: "messages", role: "log", "aria-label": "Transcript", "aria-live": "polite", tabindex: "0" });
  const message = field("Message", { name: "message", rows: 3, maxlength: 4000 }, "textarea");
  const send = h("button", { type: "submit", class: "primary", text: "Send" });
  const interrupt = h("button", { type: "button", text: "Interrupt" });
  const composer = h("form", { class: "composer" }, message.wrap, h("div", { class: "buttons" }, send, interrupt));

  const ensureConversation = () => {
    if (realtime.conversationId !== undefined) return realtime.opened;
    realtime.open(null);
    return false;
  };
  const sendText = (text) => {
    if (realtime.conversationId === undefined) realtime.open(null);
    const clientId = realtime.sendMessage(text);
    const el = h("div", { class: "message user pending", "data-client-id": clientId }, h("p", { text }));
    pending.set(clientId, el);
    messages.append(el);
    scroll();
  };
  const avatar = createAvatarPanel(ctx, { ensureConversation, sendTranscript: sendText });

  main.append(
    h(
      "div",
      { class: "chat-layout" },
      conversations,
      h(
        "section",
        { "aria-labelledby": "chat-title" },
        h("div", { class: "status-line" }, h("h1", { id: "chat-title", text: "Chat" }), connection),
        alert.el,
        messages,
        composer,
      ),
      avatar.el,
    ),
  );

  function scroll() {
    messages.scrollTop = messages.scrollHeight;
  }

  function docTitle(id) {
    return titles.get(id) || `Document ${String(id).slice(0, 8)}`;
  }

  function loadTitles(force = false) {
    if (!titlesLoaded || force) {
      titlesLoaded = api("kb/documents", { query: { limit: 200 } })
        .then((listing) => {
          for (const doc of listing.documents || []) titles.set(doc.document_id, doc.title);
        })
        .catch(() => {});
    }
    return titlesLoaded;
  }

  function citationList(citations) {
    const seen = new Set();
    const items = [];
    for (const c of citations || []) {
      const label = `${docTitle(c.document_id)}, version ${c.version}, page ${c.page}`;
      if (seen.has(label)) continue;
      seen.add(label);
      items.push(h("li", { text: label }));
    }
    return items.length ? h("ul", { class: "citations", "aria-label": "Sources" }, items) : null;
  }

  function answerFor(replyTo) {
    let view = answers.get(replyTo);
    if (!view) {
      const text = h("p", { class: "text" });
      const extra = h("div", {});
      const el = h("article", { class: "message answer", "data-reply-to": String(replyTo), "aria-label": "Answer" }, text, extra);
      view = { el, text, extra, deltas: new Map(), citations: [], done: false };
      answers.set(replyTo, view);
      messages.append(el);
    }
    return view;
  }

  function renderAnswer(view, note) {
    if (!view.done) view.text.textContent = [...view.deltas.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]).join("");
    replace(view.extra, note ? h("p", { class: "note", text: note }) : null, citationList(view.citations));
  }

  function onStored(frame) {
    const data = frame.data || {};
    if (frame.type === "message.created") {
      const el = pending.get(data.client_id);
      pending.delete(data.client_id);
      if (el) {
        el.classList.remove("pending");
        el.dataset.seq = String(frame.seq);
      } else {
        messages.append(h("div", { class: "message user", "data-seq": String(frame.seq) }, h("p", { text: data.text })));
      }
    } else if (frame.type === "answer.delta") {
      const view = answerFor(data.reply_to);
      view.deltas.set(frame.seq, data.text || "");
      view.citations.push(...(data.citations || []));
      renderAnswer(view);
    } else if (frame.type === "answer.completed") {
      const view = answerFor(data.reply_to);
      view.done = true;
      view.text.textContent = data.text || "";
      view.citations = data.citations || [];
      const notes = [];
      if (data.error) notes.push("The answer failed.");
      if (data.interrupted) notes.push("Interrupted.");
      if (data.avatar_error) notes.push("The avatar could not speak this answer: no browser has joined its room.");
      const note = notes.join(" ");
      renderAnswer(view, note);
      if (view.citations.some((c) => !titles.has(c.document_id))) {
        loadTitles(true).then(() => renderAnswer(view, note));
      }
    } else if (frame.type === "answer.interrupted") {
      renderAnswer(answerFor(data.reply_to), "Interrupted.");
    }
    scroll();
  }

  function onFrame(event) {
    const frame = event.detail;
    if (frame.type === "conversation.opened") {
      if (location.pathname !== `/chat/${frame.conversation_id}`) {
        history.replaceState(null, "", `/chat/${encodeURIComponent(frame.conversation_id)}`);
        loadConversations();
      }
    } else if (frame.type === "error") {
      const data = frame.data || {};
      alert.show(data.code === "rate-limited" ? "You are sending too fast. Wait a moment." : data.message || data.code);
    }
    if (typeof frame.seq === "number") onStored(frame);
    avatar.handle(frame);
  }

  function onState(event) {
    connection.textContent = STATE_TEXT[event.detail] || event.detail;
    connection.className = `connection ${event.detail}`;
  }

  async function loadConversations() {
    let listing;
    try {
      listing = await api("conversations", { query: { limit: 50 } });
    } catch {
      return;
    }
    const current = realtime.conversationId;
    replace(
      list,
      (listing.conversations || []).map((c) =>
        h(
          "li",
          {},
          h("a", {
            href: `/chat/${encodeURIComponent(c.conversation_id)}`,
            "aria-current": c.conversation_id === current ? "page" : null,
            text: c.title || `Conversation of ${when(c.created_at)}`,
          }),
        ),
      ),
    );
  }

  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = message.control.value.trim();
    if (!text) return;
    alert.clear();
    sendText(text);
    message.control.value = "";
    message.control.focus();
  });
  message.control.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });
  interrupt.addEventListener("click", () => {
    alert.clear();
    if (realtime.conversationId === undefined || !realtime.send("avatar.interrupt", {})) {
      alert.show("Nothing to interrupt right now.");
    }
  });

  realtime.addEventListener("frame", onFrame);
  realtime.addEventListener("state", onState);
  await loadTitles();
  if (conversationId) realtime.open(conversationId);
  loadConversations();

  return () => {
    realtime.removeEventListener("frame", onFrame);
    realtime.removeEventListener("state", onState);
    realtime.leave();
    avatar.destroy();
  };
}
