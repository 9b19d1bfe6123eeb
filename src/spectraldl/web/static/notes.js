/* spectraldl notes and flags: a panel under the item on the labelling and vetting pages.
 * `m` opens the note, Ctrl+Enter (or the button) saves it, Escape leaves it. */
"use strict";

(function (global) {
  const { api } = global.SDL;
  const stepper = global.sdlStepper;
  if (!stepper) return;
  const item = document.getElementById("item");
  const panel = document.createElement("form");
  panel.id = "notes-panel";
  panel.className = "notes";
  const label = document.createElement("label");
  label.textContent = "Note (m) ";
  const text = document.createElement("textarea");
  text.id = "note-text";
  text.rows = 2;
  text.maxLength = 4000;
  label.appendChild(text);
  const named = document.createElement("span");
  named.id = "note-flags";
  const extra = document.createElement("input");
  extra.id = "note-extra";
  extra.placeholder = "other flags, comma-separated";
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = "save note";
  const state = document.createElement("span");
  state.id = "note-state";
  state.className = "hint";
  const others = document.createElement("p");
  others.id = "note-others";
  others.className = "hint";
  panel.append(label, named, extra, save, state, others);
  item.appendChild(panel);
  let ident = null;
  let known = [];
  let edited = false;  /* typed into since this item was shown: its loaded note must not overwrite it */
  panel.addEventListener("input", () => { edited = true; });

  function checked() {
    const flags = [...named.querySelectorAll("input:checked")].map((box) => box.value);
    return flags.concat(extra.value.split(",").map((f) => f.trim()).filter(Boolean));
  }

  function fill(notes, me) {
    others.textContent = notes.filter((n) => n.user !== me)
      .map((n) => n.user + ": " + [n.flags.join(", "), n.text].filter(Boolean).join(" — ")).join(" · ");
    if (edited) return;
    const mine = notes.find((n) => n.user === me);
    text.value = mine ? mine.text : "";
    const flags = mine ? mine.flags : [];
    for (const box of named.querySelectorAll("input")) box.checked = flags.includes(box.value);
    extra.value = flags.filter((f) => !known.includes(f)).join(", ");
    state.textContent = "";
  }

  let me = null;
  async function show(payload) {
    ident = payload.ident;
    edited = false;
    text.value = "";
    extra.value = "";
    for (const box of named.querySelectorAll("input")) box.checked = false;
    const [notes, who] = await Promise.all([
      api("/api/notes?ident=" + encodeURIComponent(ident)),
      me ? Promise.resolve({ user: me }) : api("/api/me"),
    ]);
    me = who.user || who.name || who.username;
    if (payload.ident === ident) fill(notes.notes, me);
  }

  panel.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!ident) return;
    state.textContent = "saving…";
    try {
      await api("/api/notes", { method: "POST", json: { ident, text: text.value, flags: checked() } });
      edited = false;
      state.textContent = "saved";
    } catch (err) {
      state.textContent = "not saved: " + err.message;
    }
  });
  panel.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.ctrlKey) { e.preventDefault(); panel.requestSubmit(); }
    if (e.key === "Escape") { e.preventDefault(); document.activeElement.blur(); }
    e.stopPropagation();
  });
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA")) return;
    if (e.key === "m" && !e.ctrlKey && !e.altKey && !e.metaKey) { e.preventDefault(); text.focus(); }
  });

  api("/api/note-flags").then((answer) => {
    known = Object.keys(answer.flags);
    for (const [name, what] of Object.entries(answer.flags)) {
      const box = document.createElement("label");
      box.title = what;
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = name;
      box.append(input, " " + name + " ");
      named.appendChild(box);
    }
  });

  /* Show the notes of each item the page draws. */
  const render = stepper.cfg.render;
  stepper.cfg.render = (payload, owner) => {
    render(payload, owner);
    show(payload).catch((err) => { state.textContent = "notes: " + err.message; });
  };
  if (stepper.current) show(stepper.current);
})(window);
