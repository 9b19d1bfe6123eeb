/* spectraldl: what a page keeps for its user across a login (unsaved note drafts, undos the
 * ended session refused, the item to come back to), as `SDLKept`. In sessionStorage (this tab
 * only: it survives a reload and the login page, not the tab), under keys that carry the
 * user's name, so that nothing one user kept is ever shown to another on a shared browser.
 * Loaded on every page of a logged-in user: the pages keep, `Log out` discards. */
"use strict";

(function (global) {
  const PREFIX = "sdl-kept:";
  global.SDLKept = {
    user() { const who = document.querySelector(".who"); return who ? who.textContent : ""; },
    key(name) { return PREFIX + JSON.stringify([this.user(), name]); },
    get(name) {
      try { return JSON.parse(global.sessionStorage.getItem(this.key(name)) || "null"); } catch (err) { return null; }
    },
    set(name, value) {
      try { global.sessionStorage.setItem(this.key(name), JSON.stringify(value)); } catch (err) { /* storage off or full */ }
    },
    remove(name) {
      try { global.sessionStorage.removeItem(this.key(name)); } catch (err) { /* storage off */ }
    },
    /* The names of this user's kept things. */
    names() {
      const names = [];
      try {
        for (let i = 0; i < global.sessionStorage.length; i++) {
          const key = global.sessionStorage.key(i);
          if (!key.startsWith(PREFIX)) continue;
          const name = JSON.parse(key.slice(PREFIX.length));
          if (name[0] === this.user()) names.push(String(name[1]));
        }
      } catch (err) { /* storage off */ }
      return names;
    },
    /* How many kept things of this user have a name starting with `prefix`. */
    count(prefix) { return this.names().filter((name) => name.startsWith(prefix)).length; },
  };
})(window);
