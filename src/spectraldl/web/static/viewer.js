/* spectraldl: the three spectrum views and the keyboard-driven stepper that the
 * labelling and vetting pages share.
 *
 * Data from the server is only ever put into the page with textContent, never
 * as HTML. Writes carry the session's CSRF token in X-CSRF-Token.
 */
"use strict";

(function (global) {
  const Plot = global.SDLPlot;
  const PREFETCH = 5;  /* items fetched ahead, so a key press never waits for the network */
  const csrf = document.body.dataset.csrf || "";

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  const kept = global.SDLKept;  /* kept.js: drafts, undos and the item kept across a login */

  /* The login session: once the server answers 401 (logged out, expired, password changed)
   * no more writes are sent; the page goes to the login page when the writes in flight have
   * settled, with the number of decisions that were not saved (`notSaved`), of undos that
   * were not done (`notUndone`: kept, and offered again after the login) and of note drafts
   * kept, so that the login page can say so instead of them vanishing with the page. */
  const login = { ended: false, writes: 0, unsaved: 0, undone: 0, leaving: false, hooks: [] };

  function sessionEnded() { return login.ended; }

  function notSaved(count) { login.unsaved += count; }

  /* An undo the server refused because the session ended: kept for this page (`undo` holds
   * {decision_ids, id, text}), to be offered again once its user has logged in. */
  function notUndone(undo) {
    login.undone += 1;
    const name = "undo:" + global.location.pathname;
    kept.set(name, (kept.get(name) || []).concat([undo]));
  }

  /* The undos a page kept when its session ended (oldest first), taken out of storage. */
  function takeUndos() {
    const name = "undo:" + global.location.pathname;
    const undos = kept.get(name) || [];
    kept.remove(name);
    return undos;
  }

  /* Run `hook()` just before the page goes to the login page (notes mark their draft). */
  function beforeLogin(hook) { login.hooks.push(hook); }

  function leaveWhenSettled() {
    /* A timeout runs after every promise handler: the failed writes' handlers have counted. */
    global.setTimeout(() => {
      if (login.leaving || login.writes > 0) return;
      login.leaving = true;
      for (const hook of login.hooks) hook();
      const next = encodeURIComponent(global.location.pathname + global.location.search);
      const drafts = kept.count("note:");
      global.location.assign("/login?next=" + next + "&ended=1&unsaved=" + login.unsaved +
        (login.undone ? "&undone=" + login.undone : "") + (drafts ? "&drafts=" + drafts : ""));
    }, 0);
  }

  async function send(path, opts) {
    if (opts.method === "GET") return fetch(path, opts);
    if (login.ended) { leaveWhenSettled(); throw new ApiError(401, "session ended"); }
    login.writes += 1;
    try {
      return await fetch(path, opts);
    } finally {
      login.writes -= 1;
      if (login.ended) leaveWhenSettled();
    }
  }

  async function api(path, options) {
    const opts = Object.assign({ method: "GET", credentials: "same-origin", headers: {} }, options || {});
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    if (opts.method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
    const response = await send(path, opts);
    if (response.status === 401) {
      login.ended = true;
      leaveWhenSettled();
      throw new ApiError(401, "session ended");
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
      throw new ApiError(response.status, detail || response.statusText);
    }
    return body;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined || value === "") return "–";
    if (typeof value === "number") return value.toFixed(digits === undefined ? 2 : digits);
    return String(value);
  }

  function setFacts(dl, facts) {
    dl.replaceChildren();
    for (const [name, value] of facts) {
      if (value === null || value === undefined || value === "") continue;
      const div = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = value;
      div.append(dt, dd);
      dl.append(div);
    }
  }

  /* Lines marked with the `l` key (air wavelengths, Å): nebular and stellar lines around
   * H-alpha, and the strong night-sky lines (grey). */
  const LINES_AIR = [
    [6548.05, "[N II]"], [6583.45, "[N II]"], [6678.15, "He I"], [6716.44, "[S II]"], [6730.82, "[S II]"],
    [5577.34, "sky [O I]", 1], [5889.95, "sky Na D", 1], [5895.92, "", 1], [6300.30, "sky [O I]", 1],
    [6363.78, "sky [O I]", 1], [6553.62, "sky OH", 1], [6577.28, "sky OH", 1],
  ];

  /* Vacuum wavelength of an air one (Å): the refractive index of Piskunov's formula (VALD),
   * the one spectraldl.prep.preprocess uses. */
  function airToVacuum(air) {
    const s2 = (1e4 / air) ** 2;
    return air * (1 + 0.00008336624212083 + 0.02408926869968 / (130.1065924522 - s2) +
      0.0001599740894897 / (38.92568793293 - s2));
  }

  function lineMarkers(medium) {
    return LINES_AIR.map(([x, label, sky], i) => ({
      x: medium === "air" ? x : airToVacuum(x), label, color: sky ? "#6b7280" : "#15803d", row: 1 + (i % 3),
    }));
  }

  class SpectrumViewer {
    constructor(root) {
      this.full = new Plot(root.querySelector("#plot-full"), { xlabel: "wavelength (Å)" });
      this.zoom = new Plot(root.querySelector("#plot-zoom"), { xlabel: "wavelength (Å)" });
      this.vector = new Plot(root.querySelector("#plot-vector"), { xlabel: "wavelength (Å, vacuum)" });
      this.zoomCaption = root.querySelector("#zoom-caption");
      this.lines = global.localStorage && global.localStorage.getItem("sdl-lines") === "1";
      this.spec = undefined;
      global.sdlViewer = this;
      document.addEventListener("keydown", (e) => {
        const t = e.target;
        if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
        if (e.key !== "l" || e.ctrlKey || e.altKey || e.metaKey) return;
        e.preventDefault();
        this.toggleLines();
      });
    }

    /* Show or hide the line markers (`l`), remembered in this browser. */
    toggleLines() {
      this.lines = !this.lines;
      if (global.localStorage) global.localStorage.setItem("sdl-lines", this.lines ? "1" : "0");
      if (this.spec !== undefined) this.show(this.spec);
    }

    markers(halpha, medium) {
      const line = [{ x: halpha, label: "Hα" }];
      return this.lines ? line.concat(lineMarkers(medium)) : line;
    }

    /* The zoom's caption says what it draws: a blurred line only for spectra the
     * preprocessing blurs (Ondřejov); LAMOST spectra go to the network unblurred. */
    caption(spec) {
      let text = "H-alpha region";
      if (spec && spec.zoom && spec.zoom.blurred) text += ": observed (dark) and blurred as for the network (orange)";
      else if (spec && spec.zoom) text += ": observed (the network gets it unblurred)";
      else if (spec) text += ": the preprocessed vector (no whole spectrum stored)";
      this.zoomCaption.textContent = text;
    }

    clear(message) {
      for (const plot of [this.full, this.zoom, this.vector]) plot.setData([], { message });
    }

    show(spec) {
      this.spec = spec;
      this.caption(spec);
      if (!spec) { this.clear("no spectrum stored for this row"); return; }
      const medium = spec.medium || "vacuum";
      const line = this.markers(spec.halpha_aa, medium);
      const vacuumLines = this.markers(spec.halpha_vacuum_aa, "vacuum");
      const vec = spec.vector;
      if (spec.full) {
        this.full.options.xlabel = "wavelength (Å, " + medium + ")";
        this.full.setData([{ x: spec.full.wave, y: spec.full.flux, color: "#1d232a" }], { markers: line });
        this.zoom.options.xlabel = "wavelength (Å, " + medium + ")";
        const series = [{ x: spec.zoom.wave, y: spec.zoom.flux, color: "#1d232a" }];
        if (spec.zoom.blurred) series.push({ x: spec.zoom.wave, y: spec.zoom.blurred, color: "#d97706", width: 2 });
        this.zoom.setData(series, { markers: line });
      } else {
        this.full.setData([], { message: "only the 140-point vector is stored (imported from a dataset)" });
        this.zoom.options.xlabel = "wavelength (Å, vacuum)";
        this.zoom.setData([{ x: vec.grid_aa, y: vec.x, color: "#d97706", width: 2, points: true }], {
          markers: vacuumLines,
          xrange: [spec.halpha_vacuum_aa - 40, spec.halpha_vacuum_aa + 40],
        });
      }
      this.vector.setData([{ x: vec.grid_aa, y: vec.x, color: "#1f5fa8", width: 1.5, points: true }], {
        markers: vacuumLines,
      });
    }

    facts(spec) {
      return [
        ["id", spec.ident],
        ["archive", spec.archive + (spec.form ? " " + spec.form : "")],
        ["date", spec.date_obs],
        ["RA", fmt(spec.ra, 5)],
        ["Dec", fmt(spec.dec, 5)],
        ["S/N", fmt(spec.snr, 0)],
        ["flags", spec.quality_flags],
        ["label in source", spec.reference_label],
      ];
    }
  }

  /* Steps through a queue of ids with the keyboard. `cfg` supplies:
   * fetchQueue(exclude) -> {ids, remaining}; load(id) -> payload; render(payload, state);
   * submit(payload, choice) -> {decision_id}; undo(decision_id) -> {...};
   * keys: {key: choice}; choices: [names]; describe(payload) -> text for the session list. */
  class Stepper {
    constructor(cfg) {
      this.cfg = cfg;
      this.queue = [];
      this.seen = new Set();
      this.history = [];
      this.pos = -1;
      this.cache = new Map();
      this.undoStack = [];
      this.beyond = null;
      this.done = 0;
      this.choiceTimes = [];
      this.current = null;
      this.refilling = null;
      this.exhausted = false;
      this.saving = Promise.resolve();
      global.sdlTimings = global.sdlTimings || [];
      global.sdlStepper = this;
      this.status = document.getElementById("status");
      this.message = document.getElementById("message");
      this.recent = document.getElementById("recent");
      document.addEventListener("keydown", (e) => this.onKey(e));
      for (const button of document.querySelectorAll("[data-choice]")) {
        button.addEventListener("click", () => this.choose(button.dataset.choice));
      }
      for (const button of document.querySelectorAll("[data-action]")) {
        button.addEventListener("click", () => this.action(button.dataset.action));
      }
    }

    say(text) {
      this.message.hidden = !text;
      this.message.textContent = text || "";
    }

    load(id) {
      if (!this.cache.has(id)) {
        const promise = this.cfg.load(id);
        promise.catch(() => this.cache.delete(id));
        this.cache.set(id, promise);
      }
      return this.cache.get(id);
    }

    async refill() {
      if (this.queue.length >= 2 * PREFETCH || this.exhausted) return;
      if (!this.refilling) {
        const exclude = [...this.seen, ...this.queue].slice(-1500);
        this.refilling = this.cfg.fetchQueue(exclude).then((result) => {
          let added = 0;
          for (const id of result.ids) {
            if (!this.seen.has(id) && !this.queue.includes(id)) { this.queue.push(id); added += 1; }
          }
          this.beyond = Math.max(0, result.remaining - added);
          if (!result.ids.length) this.exhausted = true;
        }).finally(() => { this.refilling = null; });
      }
      await this.refilling;
    }

    prefetch() {
      for (const id of this.queue.slice(0, PREFETCH)) this.load(id);
    }

    /* After a login: the item to come back to (`resumeAt`, set when the session ended under
     * a note being written), and the undos the ended session refused, offered again. */
    resumed(firstId) {
      const resume = kept.get("resume:" + global.location.pathname);
      kept.remove("resume:" + global.location.pathname);
      const undos = takeUndos();
      for (const undo of undos) {
        const made = Promise.resolve({ decision_id: undo.decision_ids[0] });
        this.undoStack.push({ id: undo.id, promise: made, li: null, text: undo.text, restored: true });
      }
      if (undos.length) {
        const what = undos.map((u) => u.text).join(", ");
        this.say((undos.length > 1 ? "Your undos of " + what + " were" : "Your undo of " + what + " was") +
          " not done: your session had ended. Press z to undo " + (undos.length > 1 ? "each" : "it") + " now.");
      }
      return firstId || (resume && resume.id) || null;
    }

    resumeAt(id) { kept.set("resume:" + global.location.pathname, { id }); }

    async start(firstId) {
      try {
        firstId = this.resumed(firstId);
        if (firstId) { this.history.push(firstId); this.seen.add(firstId); this.pos = 0; }
        await this.refill();
        if (this.pos < 0) await this.forward();
        else await this.show(this.history[this.pos]);
        this.updateStatus();
      } catch (err) {
        this.say("Could not load the queue: " + err.message);
      }
    }

    async forward() {
      if (this.pos < this.history.length - 1) {
        this.pos += 1;
        return this.show(this.history[this.pos]);
      }
      if (this.queue.length < 2 * PREFETCH) {
        const pending = this.refill();
        if (!this.queue.length) await pending;
      }
      const next = this.queue.shift();
      if (next === undefined) {
        this.current = null;
        this.pos = this.history.length;
        document.getElementById("item").hidden = true;
        document.getElementById("empty").hidden = false;
        if (this.cfg.onEmpty) this.cfg.onEmpty();
        return null;
      }
      this.seen.add(next);
      this.history.push(next);
      this.pos = this.history.length - 1;
      return this.show(next);
    }

    async back() {
      if (this.pos <= 0) return null;
      this.pos = Math.min(this.pos, this.history.length) - 1;
      return this.show(this.history[this.pos]);
    }

    async show(id) {
      document.getElementById("item").hidden = false;
      document.getElementById("empty").hidden = true;
      let payload;
      try {
        payload = await this.load(id);
      } catch (err) {
        this.say("Could not load item " + id + ": " + err.message);
        return null;
      }
      if (this.history[this.pos] !== id) return null;  // the user moved on meanwhile
      await new Promise((resolve) => global.requestAnimationFrame(() => {
        this.current = payload;
        this.cfg.render(payload, this);
        this.highlight(payload);
        performance.mark("sdl-drawn");
        const keyMarks = performance.getEntriesByName("sdl-key", "mark");
        if (keyMarks.length) {
          const m = performance.measure("sdl-key-to-drawn", "sdl-key", "sdl-drawn");
          global.sdlTimings.push(m.duration);
          performance.clearMarks("sdl-key");
        }
        resolve();
      }));
      this.prefetch();
      this.refill();
      return payload;
    }

    highlight(payload) {
      const mine = this.cfg.mine(payload);
      for (const button of document.querySelectorAll("[data-choice]")) {
        button.classList.toggle("current", button.dataset.choice === mine);
      }
      document.getElementById("mine").textContent = mine || "none";
      document.getElementById("others").textContent = this.cfg.others(payload);
    }

    addRecent(payload, choice, promise) {
      const li = document.createElement("li");
      li.textContent = this.cfg.describe(payload) + " → " + choice;
      this.recent.prepend(li);
      promise.then((result) => { li.dataset.decision = result.decision_id; })
        .catch(() => li.classList.add("failed"));
      return li;
    }

    /* Writes go to the server one after the other, in the order of the key presses: two
     * decisions in flight at once could otherwise be stored the other way round (a quick
     * relabel of the same spectrum would then lose the later label). */
    write(send) {
      const promise = this.saving.catch(() => {}).then(send);
      this.saving = promise;
      return promise;
    }

    choose(choice) {
      const payload = this.current;
      if (sessionEnded()) { this.say("Your session ended: key not taken; going to the login page."); return; }
      if (!payload) return;
      performance.clearMarks("sdl-key");
      performance.mark("sdl-key");
      const promise = this.write(() => this.cfg.submit(payload, choice));
      const li = this.addRecent(payload, choice, promise);
      const entry = { id: payload.id, promise, li, text: li.textContent };
      this.undoStack.push(entry);
      this.cfg.setMine(payload, choice);
      this.done += 1;
      this.choiceTimes.push(performance.now());
      promise.then(() => { this.say(""); this.updateStatus(); }).catch((err) => {
        if (err.status === 401) notSaved(1);
        this.say(err.status === 401
          ? "Your session ended: " + this.cfg.describe(payload) + " not saved; going to the login page."
          : "Not saved: " + this.cfg.describe(payload) + " (" + err.message + "). Press the key again on that item.");
        this.cfg.setMine(payload, null);
        this.done -= 1;
        this.undoStack = this.undoStack.filter((e) => e !== entry);
      });
      this.forward();
    }

    /* Undo the latest decision of this page. One the ended session refuses is kept and
     * counted (`notUndone`), and offered again after the login; the undo of a decision that
     * the ended session did not store is done already (nothing stored, nothing to make again). */
    async undo() {
      if (sessionEnded()) { this.say("Your session ended: key not taken; going to the login page."); return; }
      const entry = this.undoStack.pop();
      if (!entry) { this.say("Nothing to undo in this session."); return; }
      let made;
      try {
        made = await entry.promise;
      } catch (err) {
        if (err.status === 401) notSaved(-1);
        this.say("Undone: " + entry.text + " had not been saved (" + err.message + ").");
        return;
      }
      try {
        const result = await this.write(() => this.cfg.undo(made.decision_id));
        await this.undone(entry, result);
      } catch (err) {
        if (err.status === 401) notUndone({ decision_ids: [made.decision_id], id: entry.id, text: entry.text });
        this.say(err.status === 401
          ? "Your session ended: the undo of " + entry.text + " was not done; going to the login page."
          : "Undo failed: " + err.message);
      }
    }

    /* Show the item of an undone decision again, with the choice the undo restored. */
    async undone(entry, result) {
      try {
        if (entry.li) entry.li.classList.add("undone");
        if (!entry.restored) this.done -= 1;
        const payload = await this.load(entry.id);
        this.cfg.setMine(payload, result.label === undefined ? result.verdict : result.label);
        const at = this.history.lastIndexOf(entry.id);
        this.pos = at >= 0 ? at : this.pos;
        if (at < 0) { this.history.push(entry.id); this.pos = this.history.length - 1; }
        await this.show(entry.id);
        this.say("");
        this.updateStatus();
      } catch (err) {
        this.say("Undone, but it cannot be shown: " + err.message);
      }
    }

    action(name) {
      if (name === "undo") return this.undo();
      if (name === "prev") return this.back();
      if (name === "next") return this.forward();
      return null;
    }

    onKey(e) {
      const target = e.target;
      if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
      if (e.altKey || e.metaKey) return;
      const key = e.key;
      if (e.ctrlKey) {
        if (key === "z") { e.preventDefault(); this.undo(); }
        return;
      }
      if (key === "z" || key === "Backspace") { e.preventDefault(); this.undo(); return; }
      if (key === "ArrowLeft" || key === "k") { e.preventDefault(); this.back(); return; }
      if (key === "ArrowRight" || key === "j" || key === "s") { e.preventDefault(); this.forward(); return; }
      let choice = this.cfg.keys[key.toLowerCase()];
      if (!choice && /^[1-9]$/.test(key)) choice = this.cfg.choices[Number(key) - 1];
      if (choice) { e.preventDefault(); this.choose(choice); }
    }

    pace() {
      /* Median seconds between consecutive decisions (pauses over 10 minutes left out). */
      const t = this.choiceTimes;
      const gaps = [];
      for (let i = 1; i < t.length; i++) if (t[i] - t[i - 1] < 600000) gaps.push((t[i] - t[i - 1]) / 1000);
      if (gaps.length < 4) return null;
      gaps.sort((a, b) => a - b);
      return gaps[Math.floor(gaps.length / 2)];
    }

    updateStatus() {
      const pace = this.pace();
      const parts = ["this session: " + this.done + (pace !== null ? " (" + pace.toFixed(1) + " s each)" : "")];
      if (this.beyond !== null) parts.push("left in queue: " + (this.queue.length + this.beyond));
      if (this.cfg.statusExtra) parts.push(this.cfg.statusExtra());
      this.status.textContent = parts.join(" · ");
    }
  }

  /* Facts of the H-alpha line measured for a catalogue row (spectraldl.prep.measure): EW with its
   * error, profile type, FWHM, peak separation and V/R; none for a row without them. */
  function measurementFacts(m) {
    if (!m) return [];
    if (m.profile_type === "unmeasurable") {
      return [["H\u03b1", "unmeasurable" + (m.halpha_flag ? " (" + m.halpha_flag + ")" : "")]];
    }
    const num = (v) => typeof v === "number" && Number.isFinite(v);
    const ew = num(m.halpha_ew_aa)
      ? m.halpha_ew_aa.toFixed(2) + (num(m.halpha_ew_err_aa) ? " \u00b1 " + m.halpha_ew_err_aa.toFixed(2) : "") + " \u00c5"
      : null;
    return [
      ["H\u03b1 EW", ew],
      ["H\u03b1 profile", m.profile_type],
      ["H\u03b1 FWHM", num(m.halpha_fwhm_kms) ? m.halpha_fwhm_kms.toFixed(0) + " km/s" : null],
      ["peak separation", num(m.halpha_peak_sep_kms) ? m.halpha_peak_sep_kms.toFixed(0) + " km/s" : null],
      ["V/R", num(m.halpha_vr) ? m.halpha_vr.toFixed(2) : null],
      ["H\u03b1 note", m.halpha_flag || null],
    ];
  }

  global.SDL = { api, ApiError, sessionEnded, notSaved, notUndone, takeUndos, beforeLogin, kept, SpectrumViewer, Stepper, setFacts, fmt, measurementFacts, lineMarkers };
})(window);
