/* Rating page behaviour: keyboard shortcuts, the length question, time on task.
   Written against #rate-root, which htmx replaces after every submit, so all handlers are delegated
   and state is read from the DOM each time. */
(function () {
  "use strict";

  function root() { return document.getElementById("rate-root"); }
  function form() { return document.getElementById("rating-form"); }

  // Time on task runs from the first sight of an assignment to its submit. A panel re-rendered with
  // an error is the same assignment: it keeps its start (it restarted, and 5.8 s were stored as 1.8 s).
  var clock = {assignment: null, started: null};
  function startClock() {
    var r = root();
    if (!r || r.dataset.started) { return; }
    var id = r.dataset.assignment || null;
    if (id === null || id !== clock.assignment) { clock = {assignment: id, started: String(Date.now())}; }
    r.dataset.started = clock.started;
  }

  function chosenPosition() {
    var f = form();
    var checked = f && f.querySelector('input[name="preference"]:checked');
    return checked ? Number(checked.dataset.position) : null;
  }

  // Ask "does the extra length add content?" when the picked side is much longer than the other.
  function updateLengthCheck() {
    var r = root(), box = document.getElementById("length-check");
    if (!r || !box) { return; }
    var pos = chosenPosition();
    var left = Number(r.dataset.wordsLeft), right = Number(r.dataset.wordsRight);
    var ratio = Number(r.dataset.ratio);
    var ask = false;
    if (pos !== null && pos !== 4) {
      var chosen = pos < 4 ? left : right, other = pos < 4 ? right : left;
      ask = chosen >= ratio * Math.max(other, 1);
    }
    var appeared = ask && box.hidden;
    box.hidden = !ask;
    if (!ask) { box.querySelectorAll("input").forEach(function (i) { i.checked = false; }); }
    if (appeared && scrollOnAppear) {
      revealActionable(box);
      // it appeared without a word: a screen-reader user learnt of it from the error after Submit
      say("Length question: you picked the much longer answer. Does its extra length add content? A: adds content, N: adds nothing.");
    }
  }
  var scrollOnAppear = false;

  // What changed, said once through the live region outside the swapped panel (rate.html).
  function say(text) {
    var live = document.getElementById("rate-live");
    if (!live || !text) { return; }
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 60);  // a fresh change is read again
  }

  // One-key shortcuts can be turned off (kept in this browser): speech input and stray keys chose,
  // ticked "both bad" or skipped unasked (WCAG 2.1.4).
  var SHORTCUTS_OFF = "rate-shortcuts-off";
  function shortcutsOff() {
    try { return window.localStorage.getItem(SHORTCUTS_OFF) === "1"; } catch (e) { return false; }
  }

  function submitForm() {
    var f = form();
    if (!f) { return; }
    var r = root();
    var t = f.querySelector('input[name="time_on_task_ms"]');
    if (t && r && r.dataset.started) { t.value = String(Date.now() - Number(r.dataset.started)); }
    f.requestSubmit();
  }

  function toggle(id) {
    var el = document.getElementById(id);
    if (el) { el.hidden = !el.hidden; return !el.hidden; }
    return false;
  }

  function typing(target) {
    var tag = (target.tagName || "").toLowerCase();
    return tag === "textarea" || tag === "select" || (tag === "input" && ["text", "search", "number"].indexOf(target.type) >= 0);
  }

  function helpOpen() { var h = document.getElementById("help"); return h && !h.hidden; }

  // The help overlay is a modal dialog: focus moves into it, stays there, and goes back on close.
  var helpOpener = null;
  function openHelp() {
    var h = document.getElementById("help"); if (!h) { return; }
    helpOpener = document.activeElement;
    h.hidden = false;
    var off = document.getElementById("shortcuts-off"); if (off) { off.checked = shortcutsOff(); }
    document.getElementById("help-card").focus();
  }
  function closeHelp() {
    var h = document.getElementById("help"); if (!h || h.hidden) { return; }
    h.hidden = true;
    if (helpOpener && helpOpener.focus && document.contains(helpOpener)) { helpOpener.focus(); }
    helpOpener = null;
  }
  function trapTab(ev) {
    var controls = Array.prototype.slice.call(document.querySelectorAll("#help input, #help button"));
    if (!controls.length) { return; }
    var first = controls[0], last = controls[controls.length - 1];
    var inside = document.getElementById("help").contains(document.activeElement);
    var atStart = document.activeElement === first || document.activeElement.id === "help-card";
    if (ev.shiftKey && (atStart || !inside)) { last.focus(); ev.preventDefault(); }
    else if (!ev.shiftKey && (document.activeElement === last || !inside)) { first.focus(); ev.preventDefault(); }
  }

  // Enter on a link, a button, a summary or a select does its own job (follow, log out, open), never
  // submits the rating.
  function ownsEnter(target) {
    return Boolean(target.closest && target.closest("a[href], button, summary, select, [role=button]"));
  }

  document.addEventListener("keydown", function (ev) {
    if (!root() || !form()) { return; }
    if (helpOpen() && ev.key === "Tab") { trapTab(ev); return; }
    if (helpOpen() && ev.key !== "Escape" && ev.key !== "?") { return; }  // the overlay takes no shortcuts
    if (ev.key === "Escape") {
      closeHelp();
      var s = document.getElementById("skip-form"); if (s) { s.hidden = true; }
      if (typing(ev.target)) { ev.target.blur(); }
      return;
    }
    if (typing(ev.target)) {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && ev.target.id === "id_rationale") {
        ev.preventDefault(); submitForm();
      }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (shortcutsOff()) { return; }  // Enter on a focused button still submits, as in any form
    var f = form();
    if (/^[1-7]$/.test(ev.key)) {
      var radio = f.querySelector('input[name="preference"][data-key="' + ev.key + '"]');
      if (radio) { radio.checked = true; radio.focus(); changed(radio); }
      ev.preventDefault();
    } else if (ev.key === "Enter") {
      if (ownsEnter(ev.target)) { return; }
      ev.preventDefault(); submitForm();
    } else if (ev.key === "a" || ev.key === "A" || ev.key === "n" || ev.key === "N") {
      var box = document.getElementById("length-check");
      if (box && !box.hidden) {
        var v = (ev.key.toLowerCase() === "a") ? "adds_content" : "adds_nothing";
        var pick = box.querySelector('input[value="' + v + '"]'); pick.checked = true; changed(pick);
        ev.preventDefault();
      }
    } else if (ev.key === "b" || ev.key === "B") {
      var bb = f.querySelector('input[name="both_bad"]'); bb.checked = !bb.checked; ev.preventDefault();
      say(bb.checked ? "Both answers are bad: ticked." : "Both answers are bad: cleared.");
    } else if (ev.key === "s" || ev.key === "S") {
      if (toggle("skip-form")) { document.getElementById("skip-reason").focus(); }
      ev.preventDefault();
    } else if (ev.key === "g" || ev.key === "G") {
      var panel = document.getElementById("guidelines-panel");
      if (panel) { panel.classList.toggle("collapsed"); if (!panel.classList.contains("collapsed")) { panel.focus(); } }
      ev.preventDefault();
    } else if (ev.key === "?") {
      if (helpOpen()) { closeHelp(); } else { openHelp(); }
      ev.preventDefault();
    }
  });

  // An answered question's error goes away (it stayed red after a choice was made).
  function clearError(input) {
    var box = input.closest("fieldset");
    var error = box && box.querySelector(".errors");
    if (error) { error.remove(); }
    if (box) {  // answered: no longer "invalid", and no pointer to an error that is gone
      box.removeAttribute("aria-describedby");
      box.querySelectorAll('[aria-invalid]').forEach(function (i) { i.removeAttribute("aria-invalid"); });
    }
  }

  // A key that picks an option goes through the same change handler as a click (setting .checked fires
  // no change event of its own).
  function changed(input) { input.dispatchEvent(new Event("change", {bubbles: true})); }

  document.addEventListener("change", function (ev) {
    if (ev.target.name === "preference" || ev.target.name === "length_check") { clearError(ev.target); }
    if (ev.target.name === "preference") {
      scrollOnAppear = true; updateLengthCheck(); scrollOnAppear = false;
      // A choice made with a key while reading the answers: the scale and Submit come into view (on an
      // ordinary pair they sat below the fold at 1366x900, and Enter submitted a form nobody could see).
      var box = document.getElementById("length-check");
      if (!box || box.hidden) { revealActionable(ev.target.closest("fieldset")); }
    }
    if (ev.target.id === "shortcuts-off") {
      try { window.localStorage.setItem(SHORTCUTS_OFF, ev.target.checked ? "1" : "0"); } catch (e) { /* private mode */ }
      say(ev.target.checked ? "One-key shortcuts are off." : "One-key shortcuts are on.");
    }
    if (ev.target.id === "skip-reason-choice") {
      var input = document.getElementById("skip-reason");
      input.value = ev.target.value; if (!ev.target.value) { input.focus(); }
    }
  });

  document.addEventListener("click", function (ev) {
    if (ev.target.closest("#skip-toggle")) { if (toggle("skip-form")) { document.getElementById("skip-reason").focus(); } }
    if (ev.target.closest("#help-toggle")) { if (helpOpen()) { closeHelp(); } else { openHelp(); } }
    if (ev.target.id === "help" || ev.target.closest("#help-close")) { closeHelp(); }  // the backdrop, Close
  });

  // Plain click on the submit button also records the time on task.
  document.addEventListener("submit", function (ev) {
    if (ev.target.id !== "rating-form") { return; }
    var r = root(), t = ev.target.querySelector('input[name="time_on_task_ms"]');
    if (t && r && r.dataset.started && !t.value) { t.value = String(Date.now() - Number(r.dataset.started)); }
  }, true);

  function inView(el) {
    var r = el.getBoundingClientRect();
    return r.top >= 0 && r.bottom <= (window.innerHeight || document.documentElement.clientHeight);
  }

  // Bring what the rater must act on into view: the error (and the length question it is about)
  // and the Submit button below it. Without this an htmx swap left them below the fold and the
  // rater saw "nothing happened".
  function revealActionable(el) {
    var submit = document.getElementById("submit-rating");
    if (el && !inView(el)) { el.scrollIntoView({block: "center"}); }
    if (submit && !inView(submit)) {
      var top = el ? el.getBoundingClientRect().top : 0;
      submit.scrollIntoView({block: "end"});
      // Never scroll the error itself off the top to show the button.
      if (el && el.getBoundingClientRect().top < 0) { window.scrollBy(0, el.getBoundingClientRect().top - Math.max(top, 0)); }
    }
  }

  // A new panel arrived (htmx swap): start the clock (kept for the same assignment) and focus the page.
  // A fresh comparison starts at the top (the prompt); a panel with errors shows the first error.
  // The page's messages (base.html, above the panel) were about the full page load; left standing, a
  // "Nothing was saved" sat above every later panel, over ratings that were saved.
  document.addEventListener("htmx:afterSwap", function () {
    document.querySelectorAll("ul.messages").forEach(function (m) { m.remove(); });
    startClock(); updateLengthCheck();
    // A skip refused (no reason given) swaps only the skip form: the rater goes on typing the reason.
    // Focus left on the page turned those letters into shortcuts ("b" ticked both-bad, "3" chose).
    var skipError = document.querySelector('#skip-form:not([hidden]) .errors[role="alert"]');
    if (skipError) {
      document.getElementById("skip-reason").focus();
      if (!inView(skipError)) { skipError.scrollIntoView({block: "center"}); }
      return;
    }
    // Focus goes to the new panel (its heading), or to the first control an error is about, never back
    // to the top of the navigation; a text field is never focused here, so the shortcuts keep working.
    var r = root();
    var error = r && r.querySelector('.errors[role="alert"]');
    var heading = document.getElementById("rate-heading");
    if (error) {
      var box = document.getElementById("length-check");
      // the question itself, not its first option: on a radio, Space or an arrow key (scrolling back up
      // to reread the answers) chose an answer
      var field = error.closest("fieldset");
      if (field) { field.setAttribute("tabindex", "-1"); }
      (field || heading || document.body).focus({preventScroll: true});
      revealActionable(box && !box.hidden && box.contains(error) ? box : error);
      say(error.textContent.trim());
    } else {
      if (heading) { heading.focus({preventScroll: true}); }
      else if (document.activeElement && document.activeElement !== document.body) { document.activeElement.blur(); }
      window.scrollTo(0, 0);
      var told = r && r.querySelector('[role="status"]');
      say(((told ? told.textContent.trim() + " " : "") + (heading ? heading.textContent.trim() : "")).trim());
    }
  });
  // A request that failed without a panel to swap in (a 403 when the session's CSRF token changed, say
  // after signing in again in another tab; a 5xx; no network) used to change nothing on screen: the
  // rater pressed Enter again and again. Say so where they look, and keep what they chose.
  function showSendError(text) {
    var r = root(); if (!r) { return; }
    var box = document.getElementById("send-error");
    if (!box) {
      box = document.createElement("div");
      box.id = "send-error"; box.className = "errors"; box.setAttribute("role", "alert");
      var actions = r.querySelector(".actions");
      (actions ? actions.parentNode : r).insertBefore(box, actions);
    }
    box.textContent = text;
    revealActionable(box);
  }
  document.addEventListener("htmx:responseError", function (ev) {
    var status = ev.detail.xhr ? ev.detail.xhr.status : 0;
    showSendError(status === 403
      ? "Your session changed (did you sign in again in another tab?). Nothing was saved: reload the page and judge again."
      : "The server could not take this (error " + status + "). Nothing was saved: your choice is kept; try again or reload the page.");
  });
  document.addEventListener("htmx:sendError", function () {
    showSendError("The server could not be reached. Nothing was saved: your choice is kept; try again in a moment.");
  });
  document.addEventListener("htmx:beforeRequest", function () {
    var box = document.getElementById("send-error"); if (box) { box.remove(); }
  });
  startClock();
  updateLengthCheck();
})();
