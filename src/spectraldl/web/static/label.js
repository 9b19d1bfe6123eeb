/* spectraldl labelling page: one key per class, undo, previous/next, skip. */
"use strict";

(function (global) {
  const { api, SpectrumViewer, Stepper, setFacts, measurementFacts } = global.SDL;
  const body = document.body.dataset;
  const mode = body.mode || "mine";
  const archive = body.archive || "";
  /* Keys and choices come from the server (one source for the page and its buttons). */
  const CHOICES = JSON.parse(body.choices);
  const KEYS = Object.fromEntries(Object.entries(JSON.parse(body.keys)).map(([name, key]) => [key, name]));
  const viewer = new SpectrumViewer(document.getElementById("item"));
  let progress = null;

  /* The other stored form of an Ondřejov exposure (raw file or SSAP record), with its labels. */
  function showOtherForms(forms) {
    const line = document.getElementById("other-form");
    line.replaceChildren();
    line.hidden = !forms.length;
    for (const form of forms) {
      const link = document.createElement("a");
      link.href = "/label/" + form.id;
      link.textContent = form.ident;
      line.append("The same exposure is also stored as ", link, " (" + (form.form || "its other form") +
        "): your label there " + (form.mine || "none") + ", majority " + (form.consensus || "none") + ".");
    }
  }

  async function refreshProgress() {
    try { progress = await api("/api/progress"); } catch (err) { progress = null; }
    stepper.updateStatus();
  }

  const stepper = new Stepper({
    keys: KEYS,
    choices: CHOICES,
    fetchQueue: (exclude) => api("/api/queue?mode=" + encodeURIComponent(mode) + "&archive=" + encodeURIComponent(archive) +
      "&limit=20&exclude=" + exclude.join(",")),
    load: (id) => api("/api/spectra/" + id),
    render: (spec) => {
      document.getElementById("title").textContent = spec.object || spec.ident;
      setFacts(document.getElementById("facts"), viewer.facts(spec).concat(measurementFacts(spec.measurement)));
      const note = document.getElementById("note");
      note.hidden = spec.has_flux;
      note.textContent = spec.has_flux ? "" : "Imported from a spectraldl dataset: only the preprocessed 140-point vector is stored, not the whole spectrum.";
      showOtherForms(spec.other_forms || []);
      viewer.show(spec);
    },
    mine: (spec) => spec.labels.mine,
    others: (spec) => {
      const n = Object.keys(spec.labels.votes).filter((u) => u !== document.querySelector(".who").textContent).length;
      return n ? "(" + n + " other labeller" + (n > 1 ? "s" : "") + ")" : "";
    },
    setMine: (spec, label) => { spec.labels.mine = label; },
    submit: (spec, label) => api("/api/labels", { method: "POST", json: { spectrum_id: spec.id, label } }),
    undo: (decisionId) => api("/api/labels/undo", { method: "POST", json: { decision_id: decisionId } }),
    describe: (spec) => (spec.object || spec.ident),
    statusExtra: () => progress ? "you: " + progress.labelled_by_me + " of " + progress.total + " labelled" +
      ", " + progress.last_hour + " in the last hour" : "",
    onEmpty: () => {
      document.getElementById("empty-uncertain").hidden = mode !== "uncertain";
      refreshProgress();
    },
  });

  /* The server's counts follow each saved label (at most once a second) and each undo. */
  let refreshTimer = null;
  const submit = stepper.cfg.submit;
  stepper.cfg.submit = (spec, label) => {
    const promise = submit(spec, label);
    promise.then(() => {
      if (!refreshTimer) refreshTimer = setTimeout(() => { refreshTimer = null; refreshProgress(); }, 1000);
    }).catch(() => {});
    return promise;
  };
  const undo = stepper.cfg.undo;
  stepper.cfg.undo = (decisionId) => {
    const promise = undo(decisionId);
    promise.then(() => refreshProgress()).catch(() => {});
    return promise;
  };

  refreshProgress();
  stepper.start(body.start ? Number(body.start) : null);
})(window);
