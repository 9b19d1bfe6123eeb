/* spectraldl vetting page: step through candidates, confirm / reject / noise. */
"use strict";

(function (global) {
  const { api, SpectrumViewer, Stepper, setFacts, fmt, measurementFacts } = global.SDL;
  const body = document.body.dataset;
  const catalogue = body.catalogue;
  const order = body.order || "probability";
  const classes = body.classes;
  /* Keys and choices come from the server (one source for the page and its buttons). */
  const CHOICES = JSON.parse(body.choices);
  const KEYS = Object.fromEntries(Object.entries(JSON.parse(body.keys)).map(([name, key]) => [key, name]));
  const viewer = new SpectrumViewer(document.getElementById("item"));

  function probabilities(cand) {
    return Object.entries(cand.probs || {}).map(([k, v]) => k + " " + fmt(v, 3)).join(", ");
  }

  const stepper = new Stepper({
    keys: KEYS,
    choices: CHOICES,
    fetchQueue: (exclude) => api("/api/catalogues/" + catalogue + "/queue?order=" + encodeURIComponent(order) +
      "&classes=" + encodeURIComponent(classes) + "&limit=20&exclude=" + exclude.join(",")),
    load: (id) => api("/api/predictions/" + id),
    render: (cand) => {
      const spec = cand.spectrum;
      document.getElementById("title").textContent = (cand.object || (spec && spec.object) || cand.ident) +
        " — predicted " + (cand.predicted_class || "?") + (cand.probability !== null ? " (p = " + fmt(cand.probability, 3) + ")" : "");
      const facts = [
        ["probabilities", probabilities(cand)],
        ["novelty", fmt(cand.novelty, 3)],
        ["flags", cand.quality_flags],
        ["model", cand.row && cand.row.model_id],
      ].concat(measurementFacts(cand.measurement));
      setFacts(document.getElementById("facts"), spec ? facts.concat(viewer.facts(spec)) : facts.concat([["id", cand.ident]]));
      const note = document.getElementById("note");
      if (!spec) {
        note.hidden = false;
        note.textContent = "This spectrum is not in the database: import it with spectraldl import " + ((cand.row && cand.row.source) || "FILE") + ".";
      } else {
        note.hidden = spec.has_flux;
        note.textContent = spec.has_flux ? "" : "Imported from a spectraldl dataset: only the 140-point vector is stored.";
      }
      viewer.show(spec);
    },
    mine: (cand) => cand.my_verdict,
    others: (cand) => {
      const n = Object.keys(cand.verdicts || {}).length - (cand.my_verdict ? 1 : 0);
      return n > 0 ? "(" + n + " other vetter" + (n > 1 ? "s" : "") + ")" : "";
    },
    setMine: (cand, verdict) => { cand.my_verdict = verdict; },
    submit: (cand, verdict) => api("/api/vet", { method: "POST", json: { prediction_id: cand.id, verdict } }),
    undo: (decisionId) => api("/api/vet/undo", { method: "POST", json: { decision_id: decisionId } }),
    describe: (cand) => (cand.object || cand.ident),
  });

  stepper.start(null);
})(window);
