/* spectraldl: logging out on purpose discards what this tab kept for that user across logins
 * (`SDLKept`: unsaved note drafts, undos not done), after asking when there is any, so that
 * the next person at this browser cannot read them from its storage. What the tab keeps
 * for another user (whose session ended here) stays for them. */
(function () {
  "use strict";
  const form = document.querySelector("form.logout");
  const kept = window.SDLKept;
  if (!form || !kept) return;
  form.addEventListener("submit", (event) => {
    const names = kept.names();
    if (names.length === 0) return;
    const question = "This tab keeps " + names.length + " unsaved thing(s) of yours for after a " +
      "login (note drafts, undos not done). Log out and discard them?";
    if (!window.confirm(question)) {
      event.preventDefault();
      return;
    }
    for (const name of names) kept.remove(name);
  });
})();
