/* spectraldl labelling page: one key per class, undo, previous/next, skip. */
"use strict";

(function (global) {
  const { api, SpectrumViewer, Stepper, setFacts } = global.SDL;
  const body = document.body.dataset;
  const mode = body.mode || "mine";
  const KEYS = { e: "emission", a: "absorption", u: "unknown", d: "double-peak", n: "noise" };
  const CHOICES = ["emission", "absorption", "unknown", "double-peak", "noise"];
  const viewer = new SpectrumViewer(document.getElementById("item"));
  let progress = null;

  async function refreshProgress() {
    try { progress = await api("/api/progress"); } catch (err) { progress = null; }
    stepper.updateStatus();
  }

  const stepper = new Stepper({
    keys: KEYS,
    choices: CHOICES,
    fetchQueue: (exclude) => api("/api/queue?mode=" + encodeURIComponent(mode) + "&limit=20&exclude=" + exclude.join(",")),
    load: (id) => api("/api/spectra/" + id),
    render: (spec) => {
      document.getElementById("title").textContent = spec.object || spec.ident;
      setFacts(document.getElementById("facts"), viewer.facts(spec));
      const note = document.getElementById("note");
      note.hidden = spec.has_flux;
      note.textContent = spec.has_flux ? "" : "Imported from a spectraldl dataset: only the preprocessed 140-point vector is stored, not the whole spectrum.";
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
      (progress.median_seconds ? ", " + progress.median_seconds.toFixed(1) + " s each (median, last hour)" : "") : "",
    onEmpty: () => {
      document.getElementById("empty-uncertain").hidden = mode !== "uncertain";
      refreshProgress();
    },
  });

  let sinceRefresh = 0;
  const choose = stepper.choose.bind(stepper);
  stepper.choose = (label) => {
    choose(label);
    sinceRefresh += 1;
    if (sinceRefresh >= 10) { sinceRefresh = 0; refreshProgress(); }
  };

  refreshProgress();
  stepper.start(body.start ? Number(body.start) : null);
})(window);
