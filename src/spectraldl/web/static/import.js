/* spectraldl import page: follows a background catalogue import until it ends. */
"use strict";

(function (global) {
  const job = document.body.dataset.job;
  const bar = document.getElementById("import-progress");
  const state = document.getElementById("import-state");
  const error = document.getElementById("import-error");
  const done = document.getElementById("import-done");
  const link = document.getElementById("import-link");

  function show(info) {
    const total = info.rows_total === null ? null : info.rows_total;
    bar.max = total || 1;
    bar.value = info.rows_done;
    state.textContent = info.status + ": " + info.rows_done + (total === null ? "" : " of " + total) + " rows";
    error.hidden = !info.error;
    error.textContent = info.error || "";
    if (info.status === "done") {
      link.href = "/vet/" + info.catalogue_id;
      done.hidden = false;
    }
    return info.status === "done" || info.status === "failed";
  }

  async function poll() {
    try {
      const response = await fetch("/api/imports/" + job, { credentials: "same-origin" });
      if (response.ok && show(await response.json())) return;
    } catch (err) { /* the server is busy or restarting: try again */ }
    global.setTimeout(poll, 1000);
  }

  poll();
})(window);
