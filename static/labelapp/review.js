/* The review list: a decision swaps its row in place (htmx). Focus went to the page body and the
   reviewer lost their place; it now goes to the next row's reason box (or back to this row's, with
   its error), and a live region says what was recorded. */
(function () {
  "use strict";
  var decided = null;  // the id of the row whose decision is on its way

  document.addEventListener("htmx:beforeRequest", function (ev) {
    var row = ev.detail.elt && ev.detail.elt.closest && ev.detail.elt.closest("tr.review-row");
    decided = row ? row.id : null;
  });

  function reasonAfter(row) {
    for (var next = row.nextElementSibling; next; next = next.nextElementSibling) {
      var box = next.querySelector('input[name="reason"]');
      if (box) { return box; }
    }
    return null;
  }

  // A decision that got no row back (a 403 when the session's CSRF token changed in another tab, a
  // server error, no connection) showed nothing at all: the row says so, with the reason kept.
  function failed(ev, text) {
    var row = ev.detail.elt && ev.detail.elt.closest && ev.detail.elt.closest("tr.review-row");
    decided = null;
    if (!row) { return; }
    var form = row.querySelector("form");
    var box = row.querySelector(".review-failed");
    if (!box) {
      box = document.createElement("div");
      box.className = "errors review-failed";
      box.setAttribute("role", "alert");
      if (form) { form.parentNode.insertBefore(box, form); } else { row.lastElementChild.appendChild(box); }
    }
    box.textContent = text;
    var live = document.getElementById("review-live");
    if (live) { live.textContent = text; }
    var own = row.querySelector('input[name="reason"]');
    if (own) { own.focus(); }
  }
  document.addEventListener("htmx:responseError", function (ev) {
    var code = ev.detail.xhr ? ev.detail.xhr.status : 0;
    failed(ev, code === 403
      ? "Not recorded: your session changed (signed in again in another tab?) or your account may not " +
        "do this. Reload the page and decide again."
      : "Not recorded: the server answered with an error (" + code + "). Try again in a moment.");
  });
  document.addEventListener("htmx:sendError", function (ev) {
    failed(ev, "Not recorded: the server could not be reached. Check the connection and try again.");
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!decided) { return; }
    var row = document.getElementById(decided);
    decided = null;
    if (!row) { return; }
    var live = document.getElementById("review-live");
    var error = row.querySelector(".errors");
    if (error) {
      var own = row.querySelector('input[name="reason"]');
      if (own) { own.setAttribute("aria-invalid", "true"); own.focus(); }
      if (live) { live.textContent = error.textContent.trim(); }
      return;
    }
    var decisions = row.querySelectorAll(".decision");
    var said = decisions.length ? decisions[0].textContent.trim() : "Recorded.";  // newest first
    if (live) { live.textContent = row.id.replace("review-", "Rating #") + ": " + said; }
    var next = reasonAfter(row);
    if (next) { next.focus(); } else { row.setAttribute("tabindex", "-1"); row.focus(); }
  });
})();
