// Tiny DOM helpers. Text always goes through textContent (never innerHTML), attributes through
// setAttribute, listeners through addEventListener: nothing user-supplied is parsed as HTML and
// the strict Content-Security-Policy (no inline script or style) holds.

/**
 * h("button", {type: "button", onclick: fn, class: "primary"}, "Save")
 * Attributes: `class`, `text`, `hidden`, on<event> (a listener), booleans (true sets "", false
 * or null skips), anything else with setAttribute. Children: nodes, strings, arrays, null.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      el.textContent = String(value);
    } else if (name === "hidden") {
      el.hidden = Boolean(value);
    } else if (name === "value") {
      el.value = String(value);
    } else if (name === "checked") {
      el.checked = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let uid = 0;
/** A unique id for label/aria wiring. */
export function newId(prefix = "id") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: <div class="field"><label>…</label><input …></div>. */
export function field(label, attrs = {}, tag = "input") {
  const id = attrs.id || newId("f");
  const control = h(tag, { ...attrs, id });
  const wrap = h("div", { class: "field" }, h("label", { for: id, text: label }), control);
  return { wrap, control };
}

/** An error box (role=alert) that shows an ApiError or any message; hidden while empty. */
export function alertBox() {
  const el = h("div", { class: "alert", role: "alert", hidden: true });
  return {
    el,
    show(error) {
      const lines = messagesOf(error);
      replace(el, ...lines.map((line) => h("p", { text: line })));
      el.hidden = lines.length === 0;
    },
    clear() {
      replace(el);
      el.hidden = true;
    },
  };
}

/** The readable lines of an error: the problem's detail, its field errors, when to retry. */
export function messagesOf(error) {
  if (!error) return [];
  if (typeof error === "string") return [error];
  const lines = [error.message || "Something went wrong."];
  for (const item of error.errors || []) {
    const fieldName = String(item.field || "").replace(/^(body|query|data)\./, "");
    lines.push(fieldName ? `${fieldName}: ${item.message}` : String(item.message));
  }
  return lines;
}

/** "2026-12-04 16:30" in the user's time zone, or "" for nothing. */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Run an async action from a button: disabled while it runs, errors into `alert`. */
export async function busy(button, alert, action) {
  if (button) button.disabled = true;
  alert?.clear();
  try {
    return await action();
  } catch (error) {
    if (alert) alert.show(error);
    else throw error;
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** A table row saying the table is empty (a real row, not hidden text). */
export function emptyRow(text, columns) {
  return h("tr", {}, h("td", { colspan: String(columns), class: "muted", text }));
}
