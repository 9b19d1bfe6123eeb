/* spectraldl grid view: a page of similar candidates, each a small H-alpha plot of its
 * preprocessed vector, vetted a page at a time with the keyboard.
 *
 * One request per page (GET /api/catalogues/{id}/grid); the next page is fetched ahead.
 * `c`/Enter confirms the page and `r` rejects it; a toggled tile (1-9, or arrows + space)
 * gets the opposite verdict. The page is stored with POST /api/vet/bulk (one call per
 * verdict); `u` undoes the last page with POST /api/vet/bulk/undo. Data from the server
 * goes into the page as text only. Performance measures (also in window.sdlGridTimings)
 * run from the key press, or the JSON's arrival, to the tiles drawn and painted.
 */
"use strict";

(function (global) {
  const { api, fmt, lineMarkers, notSaved, notUndone, takeUndos, sessionEnded } = global.SDL;
  const SVG = "http://www.w3.org/2000/svg";
  const W = 200, H = 64;
  const body = document.body.dataset;
  const root = document.getElementById("grid");
  const state = {
    page: null, toggled: new Set(), cursor: 0, next: null, unsaved: new Set(), pages: [],
    saving: Promise.resolve(), verdicts: 0, keys: 0,
  };
  global.sdlGrid = state;
  global.sdlGridTimings = [];

  function say(text) {
    const box = document.getElementById("message");
    box.hidden = !text;
    box.textContent = text || "";
  }

  function fetchPage(exclude) {
    const url = "/api/catalogues/" + body.catalogue + "/grid?size=" + body.size +
      "&classes=" + encodeURIComponent(body.classes) + "&exclude=" + exclude.join(",");
    return api(url).then((page) => { page.arrived = performance.now(); return page; });
  }

  function prefetch() {
    const shown = state.page ? state.page.items.map((item) => item.id) : [];
    state.next = fetchPage(shown.concat([...state.unsaved]));
    state.next.catch(() => { state.next = null; });
  }

  function svgEl(name, attrs) {
    const el = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
    return el;
  }

  /* The page's y range: every tile on one scale, so like spectra look alike. */
  function yRange(items) {
    let lo = Infinity, hi = -Infinity;
    for (const item of items) {
      for (const v of (item.vector ? item.vector.x : [])) {
        if (v === null) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    return hi > lo ? [lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)] : [-1, 1];
  }

  function trace(vector, range) {
    const n = vector.x.length, step = W / Math.max(1, n - 1);
    const scale = H / (range[1] - range[0]);
    let d = "", pen = "M";
    for (let i = 0; i < n; i++) {
      const v = vector.x[i];
      if (v === null) { pen = "M"; continue; }
      d += pen + (i * step).toFixed(1) + " " + (H - (v - range[0]) * scale).toFixed(1);
      pen = "L";
    }
    return svgEl("path", { d, class: "trace" });
  }

  function markers(vector, halpha) {
    const span = vector.stop_aa - vector.start_aa;
    const lines = [{ x: halpha, label: "H\u03b1", color: "" }].concat(lineMarkers("vacuum"));
    const group = svgEl("g", {});
    lines.forEach((line, i) => {
      if (line.x < vector.start_aa || line.x > vector.stop_aa) return;
      const x = ((line.x - vector.start_aa) / span * W).toFixed(1);
      const kind = "marker" + (i ? " extra" : "") + (line.color === "#6b7280" ? " sky" : "");
      const el = svgEl("line", { x1: x, x2: x, y1: 0, y2: H, class: kind, "data-label": line.label });
      const title = svgEl("title", {});
      title.textContent = line.label + " " + line.x.toFixed(2) + " \u00c5";
      el.append(title);
      group.append(el);
    });
    return group;
  }

  function tile(item, index, range, halpha) {
    const div = document.createElement("div");
    div.className = "tile";
    div.dataset.id = item.id;
    const head = document.createElement("div");
    head.className = "head";
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = index < 9 ? String(index + 1) : "";
    const what = document.createElement("span");
    what.textContent = (item.predicted_class || "?") + " p " + fmt(item.probability, 2) +
      (item.ew_aa !== null ? " EW " + item.ew_aa.toFixed(1) + " \u00c5" : "");
    const flip = document.createElement("span");
    flip.className = "flip";
    head.append(num, what, flip);
    const plot = svgEl("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none" });
    if (item.vector) plot.append(markers(item.vector, halpha), trace(item.vector, range));
    else {
      const note = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nospec" });
      note.textContent = "no spectrum stored";
      plot.append(note);
    }
    const ident = document.createElement("div");
    ident.className = "ident";
    ident.textContent = item.object ? item.object + " · " + item.ident : item.ident;
    ident.title = ident.textContent;
    div.append(head, plot, ident);
    return div;
  }

  /* Draw a page; `since` is when the wait for it began (key press or JSON arrival). */
  function draw(page, since, kind) {
    state.page = page;
    state.toggled = new Set();
    state.cursor = 0;
    const range = yRange(page.items);
    const tiles = page.items.map((item, i) => tile(item, i, range, page.halpha_vacuum_aa));
    root.replaceChildren(...tiles);
    root.classList.toggle("lines", lineState());
    document.getElementById("empty").hidden = page.items.length > 0;
    markCursor();
    status();
    return new Promise((resolve) => global.requestAnimationFrame(() => setTimeout(() => {
      performance.mark("sdl-grid-drawn");
      const span = performance.measure("sdl-grid-" + kind + "-to-drawn", { start: since, end: "sdl-grid-drawn" });
      global.sdlGridTimings.push({ kind, tiles: tiles.length, ms: span.duration });
      resolve();
    }, 0)));
  }

  function lineState() {
    return Boolean(global.localStorage && global.localStorage.getItem("sdl-lines") === "1");
  }

  function toggleLines() {
    const on = !lineState();
    if (global.localStorage) global.localStorage.setItem("sdl-lines", on ? "1" : "0");
    root.classList.toggle("lines", on);
  }

  function markCursor() {
    root.querySelectorAll(".tile").forEach((el, i) => el.classList.toggle("cursor", i === state.cursor));
  }

  function toggle(index) {
    const item = state.page && state.page.items[index];
    if (!item) return;
    const el = root.children[index];
    if (state.toggled.has(item.id)) state.toggled.delete(item.id);
    else state.toggled.add(item.id);
    el.classList.toggle("toggled", state.toggled.has(item.id));
    el.querySelector(".flip").textContent = state.toggled.has(item.id) ? "flip" : "";
    state.cursor = index;
    markCursor();
  }

  function columns() {
    return getComputedStyle(root).gridTemplateColumns.split(" ").length || 1;
  }

  function move(delta) {
    if (!state.page || !state.page.items.length) return;
    state.cursor = Math.min(state.page.items.length - 1, Math.max(0, state.cursor + delta));
    markCursor();
  }

  function status() {
    const page = state.page;
    const parts = [];
    if (page) parts.push("this page: " + page.items.length, "left after it: " + Math.max(0, page.remaining - page.items.length));
    parts.push("this session: " + state.verdicts + " verdicts, " + state.keys + " keys");
    document.getElementById("status").textContent = parts.join(" · ");
  }

  function bulk(ids, verdict) {
    return api("/api/vet/bulk", { method: "POST", json: { prediction_ids: ids, verdict } });
  }

  /* Store the page (one call per verdict, after the earlier writes) and show the next. */
  async function submit(verdict, pressed) {
    const page = state.page;
    if (!page || !page.items.length) return;
    const other = verdict === "confirm" ? "reject" : "confirm";
    const ids = page.items.map((item) => item.id);
    const flipped = ids.filter((id) => state.toggled.has(id));
    const kept = ids.filter((id) => !state.toggled.has(id));
    state.page = null;  /* keys wait for the next page: a page is never sent twice */
    ids.forEach((id) => state.unsaved.add(id));
    const send = () => Promise.all([
      kept.length ? bulk(kept, verdict) : null, flipped.length ? bulk(flipped, other) : null,
    ].filter(Boolean));
    const promise = state.saving.catch(() => {}).then(send);
    state.saving = promise;
    const entry = { ids, promise };
    state.pages.push(entry);
    state.verdicts += ids.length;
    promise.then(() => { say(""); }).catch((err) => {
      if (err.status === 401) notSaved(ids.length);
      say("Not saved: a page of " + ids.length + " (" + err.message + "); its candidates come back later.");
      state.verdicts -= ids.length;
      state.pages = state.pages.filter((e) => e !== entry);
    }).finally(() => { ids.forEach((id) => state.unsaved.delete(id)); status(); });
    const pending = state.next || fetchPage(ids.concat([...state.unsaved]));
    state.next = null;
    try {
      await draw(await pending, pressed, "key");
      prefetch();
    } catch (err) {
      say("Could not load the next page: " + err.message);
      await load().catch(() => {});
    }
  }

  /* Undo the last page. An undo the ended session refuses is kept and counted (`notUndone`)
   * and offered again after the login; a page the ended session did not store needs none. */
  async function undo() {
    if (sessionEnded()) { say("Your session ended: key not taken; going to the login page."); return; }
    const entry = state.pages.pop();
    if (!entry) { say("No page to undo in this session."); return; }
    let decisionIds;
    try {
      decisionIds = (await entry.promise).flatMap((result) => result.decision_ids);
    } catch (err) {
      if (err.status === 401) notSaved(-entry.ids.length);
      say("Undone: that page of " + entry.ids.length + " had not been saved (" + err.message + ").");
      return;
    }
    try {
      const undone = state.saving.catch(() => {}).then(() => api("/api/vet/bulk/undo", {
        method: "POST", json: { decision_ids: decisionIds },
      }));
      state.saving = undone;
      await undone;
    } catch (err) {
      if (err.status === 401) notUndone({ decision_ids: decisionIds, ids: entry.ids, text: pageText(entry.ids) });
      say(err.status === 401 ? "Your session ended: the undo of " + pageText(entry.ids) +
        " was not done; going to the login page." : "Undo failed: " + err.message);
      return;
    }
    if (!entry.restored) state.verdicts -= entry.ids.length;
    say("");
    await load().catch((err) => say("Undone; could not load the grid: " + err.message));
  }

  function pageText(ids) { return "a page of " + ids.length + " verdict" + (ids.length > 1 ? "s" : ""); }

  /* After a login: the page undos the ended session refused, offered again with `u`. */
  function restoreUndos() {
    const undos = takeUndos();
    for (const undo of undos) {
      const made = Promise.resolve([{ decision_ids: undo.decision_ids }]);
      state.pages.push({ ids: undo.ids, promise: made, restored: true });
    }
    if (!undos.length) return;
    say((undos.length > 1 ? "Your undos of " + undos.length + " pages were" : "Your undo of " + undos[0].text + " was") +
      " not done: your session had ended. Press u to undo " + (undos.length > 1 ? "each" : "it") + " now.");
  }

  async function load() {
    state.next = null;
    const page = await fetchPage([...state.unsaved]);
    await draw(page, page.arrived, "load");
    prefetch();
  }

  function onKey(e) {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    if (e.ctrlKey || e.altKey || e.metaKey) return;
    const key = e.key;
    const pressed = performance.now();
    const act = {
      c: () => submit("confirm", pressed),
      Enter: () => submit("confirm", pressed),
      r: () => submit("reject", pressed),
      u: () => undo(),
      l: () => toggleLines(),
      " ": () => toggle(state.cursor),
      ArrowLeft: () => move(-1),
      ArrowRight: () => move(1),
      ArrowUp: () => move(-columns()),
      ArrowDown: () => move(columns()),
    }[key] || (/^[1-9]$/.test(key) ? () => toggle(Number(key) - 1) : null);
    if (!act || (key === "Enter" && t && (t.tagName === "A" || t.tagName === "BUTTON"))) return;
    e.preventDefault();
    state.keys += 1;
    act();
    status();
  }

  document.addEventListener("keydown", onKey);
  restoreUndos();
  load().catch((err) => say("Could not load the grid: " + err.message));
})(window);
