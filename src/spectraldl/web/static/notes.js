/* spectraldl notes and flags: a panel under the item on the labelling and vetting pages.
 * `m` opens the note, Ctrl+Enter (or the button) saves it, Escape leaves it. What is typed
 * is kept as a draft of its item (SDL.kept: this tab, this user) until it is saved, so that
 * a session ending under it (the page then goes to the login page) or a reload loses nothing:
 * the item's draft comes back in the panel whenever the item is shown to its user again. */
"use strict";

(function (global) {
  const { api, kept, beforeLogin } = global.SDL;
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
  const discard = document.createElement("button");
  discard.type = "button";
  discard.id = "note-discard";
  discard.textContent = "discard draft";
  discard.hidden = true;
  const others = document.createElement("p");
  others.id = "note-others";
  others.className = "hint";
  panel.append(label, named, extra, save, state, discard, others);
  item.appendChild(panel);
  let ident = null;
  let known = [];
  let mine = null;  /* the user's saved note of the item shown */
  let edited = false;  /* typed into since this item was shown: its loaded note must not overwrite it */
  panel.addEventListener("input", () => {
    edited = true;
    if (ident) kept.set("note:" + ident, { text: text.value, flags: checked() });
  });

  function checked() {
    const flags = [...named.querySelectorAll("input:checked")].map((box) => box.value);
    return flags.concat(extra.value.split(",").map((f) => f.trim()).filter(Boolean));
  }

  function put(note) {
    text.value = note ? note.text : "";
    const flags = note ? note.flags : [];
    for (const box of named.querySelectorAll("input")) box.checked = flags.includes(box.value);
    extra.value = flags.filter((f) => !known.includes(f)).join(", ");
  }

  function same(a, b) {
    return (a ? a.text : "") === (b ? b.text : "") &&
      JSON.stringify(a ? a.flags : []) === JSON.stringify(b ? b.flags : []);
  }

  /* The item's draft, if one is kept: shown instead of the saved note, and said so. */
  function restore() {
    const draft = kept.get("note:" + ident);
    discard.hidden = !draft;
    if (!draft) return;
    put(draft);
    edited = true;
    state.textContent = "unsaved draft kept from before: save it (Ctrl+Enter) or discard it";
  }

  function fill(notes, me) {
    others.textContent = notes.filter((n) => n.user !== me)
      .map((n) => n.user + ": " + [n.flags.join(", "), n.text].filter(Boolean).join(" — ")).join(" · ");
    mine = notes.find((n) => n.user === me) || null;
    const draft = kept.get("note:" + ident);
    if (draft && same(draft, mine)) dropDraft(ident);  /* saved after all: nothing to keep */
    if (edited) return;
    put(mine);
    state.textContent = "";
  }

  function dropDraft(of) {
    kept.remove("note:" + of);
    if (of !== ident) return;
    discard.hidden = true;
    if (state.textContent.startsWith("unsaved draft")) state.textContent = "";
  }

  const flagsReady = api("/api/note-flags").then((answer) => {
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

  let me = null;
  async function show(payload) {
    ident = payload.ident;
    delete panel.dataset.shown;
    edited = false;
    mine = null;
    put(null);
    await flagsReady.catch(() => {});
    if (payload.ident !== ident) return;
    restore();
    const [notes, who] = await Promise.all([
      api("/api/notes?ident=" + encodeURIComponent(ident)),
      me ? Promise.resolve({ user: me }) : api("/api/me"),
    ]);
    me = who.user || who.name || who.username;
    if (payload.ident !== ident) return;
    fill(notes.notes, me);
    panel.dataset.shown = ident;  /* the item's notes (and draft) are in the panel */
  }

  panel.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!ident) return;
    const note = { ident, text: text.value, flags: checked() };
    state.textContent = "saving…";
    try {
      await api("/api/notes", { method: "POST", json: note });
      if (same(kept.get("note:" + note.ident), note)) dropDraft(note.ident);
      if (note.ident !== ident) return;
      edited = false;
      mine = note;
      state.textContent = "saved";
    } catch (err) {
      if (note.ident !== ident) return;
      state.textContent = "not saved: " + err.message + (err.status === 401 ? "; the note is kept for when you log in" : "");
    }
  });
  discard.addEventListener("click", () => {
    dropDraft(ident);
    edited = false;
    put(mine);
  });
  /* The session ended under a note being written: come back to its item after the login. */
  beforeLogin(() => {
    if (ident && kept.get("note:" + ident) && stepper.current && stepper.current.ident === ident) {
      stepper.resumeAt(stepper.current.id);
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

  /* Show the notes of each item the page draws. */
  const render = stepper.cfg.render;
  stepper.cfg.render = (payload, owner) => {
    render(payload, owner);
    show(payload).catch((err) => { state.textContent = "notes: " + err.message; });
  };
  if (stepper.current) show(stepper.current);
})(window);
