// bootpilot console behaviour, loaded from this origin (the CSP allows no
// inline script). Confirmation dialogs: a button with data-confirm opens
// the <dialog> named by it; its "Confirm" button submits the form.
"use strict";
document.addEventListener("click", function (ev) {
  var b = ev.target.closest("[data-confirm]");
  if (b) {
    ev.preventDefault();
    var d = document.getElementById(b.getAttribute("data-confirm"));
    if (d && d.showModal) { d.showModal(); }
    return;
  }
  var c = ev.target.closest("[data-close]");
  if (c) {
    ev.preventDefault();
    var dl = c.closest("dialog");
    if (dl) { dl.close(); }
  }
});
// Select-all checkbox for the host list.
document.addEventListener("change", function (ev) {
  if (ev.target.matches("[data-select-all]")) {
    document.querySelectorAll("input[name=host]").forEach(function (cb) { cb.checked = ev.target.checked; });
  }
});
