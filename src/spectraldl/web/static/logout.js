/* spectraldl: logging out on purpose discards what this tab kept for that user across logins
 * (unsaved note drafts, undos not done: viewer.js's `kept`), after asking when there is any,
 * so that the next person at this browser cannot read them from its storage. What the tab
 * keeps for another user (whose session ended here) stays for them. */
(function () {
  "use strict";
  const form = document.querySelector("form.logout");
  const who = document.querySelector(".who");
  if (!form || !who) return;
  function keptKeys() {
    const mine = "sdl-kept:" + JSON.stringify([who.textContent, ""]).slice(0, -3);
    const keys = [];
    try {
      for (let i = 0; i < window.sessionStorage.length; i++) {
        const key = window.sessionStorage.key(i);
        if (key.startsWith(mine)) keys.push(key);
      }
    } catch (err) { /* storage off: nothing kept */ }
    return keys;
  }
  form.addEventListener("submit", (event) => {
    const keys = keptKeys();
    if (keys.length === 0) return;
    const question = "This tab keeps " + keys.length + " unsaved thing(s) of yours for after a " +
      "login (note drafts, undos not done). Log out and discard them?";
    if (!window.confirm(question)) {
      event.preventDefault();
      return;
    }
    for (const key of keys) window.sessionStorage.removeItem(key);
  });
})();
