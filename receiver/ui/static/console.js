// Feedback buttons: POST {"helpful": true|false} to the API route as JSON. The console's
// login cookie goes along (same origin); the page itself needs no other script.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form[data-feedback]");
  if (!form) { return; }
  var out = form.querySelector("output");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = event.submitter;
    var helpful = button && button.value === "true";
    fetch(form.getAttribute("action"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ helpful: helpful })
    }).then(function (resp) {
      out.textContent = resp.ok
        ? "Thanks: recorded as " + (helpful ? "helpful" : "not helpful") + "."
        : "Not recorded (HTTP " + resp.status + ").";
      form.setAttribute("data-state", resp.ok ? "sent" : "failed");
    }).catch(function () {
      out.textContent = "Not recorded (network error).";
      form.setAttribute("data-state", "failed");
    });
  });
});
