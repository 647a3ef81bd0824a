// Feedback buttons: POST {"helpful": true|false} to the API route as JSON. On-call forms
// (data-action): their fields as a JSON object to the API route, then the page reloads to show
// the new state. The incident list refreshes its rows every few seconds from ?fragment=rows.
// JSON bodies are the CSRF protection: a cross-site form cannot send application/json, and the
// login cookie (same origin, SameSite=Strict) goes only with these same-origin requests.
"use strict";
var REFRESH_MS = 5000;
document.addEventListener("DOMContentLoaded", function () {
  var table = document.querySelector("table[data-refresh]");
  if (table) {
    var body = table.querySelector("tbody");
    window.setInterval(function () {
      fetch(table.getAttribute("data-refresh"), { credentials: "same-origin" })
        .then(function (resp) { return resp.ok ? resp.text() : null; })
        .then(function (html) {
          if (html !== null) { body.innerHTML = html; table.setAttribute("data-refreshed", String(Date.now())); }
        })
        .catch(function () { /* keep the rows shown; the next tick tries again */ });
    }, REFRESH_MS);
  }
  var out = document.getElementById("action-result");
  document.querySelectorAll("form[data-action]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var fields = {};
      new FormData(form).forEach(function (value, name) { fields[name] = String(value); });
      fetch(form.getAttribute("action"), {
        method: form.getAttribute("data-method") || "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(fields)
      }).then(function (resp) {
        // read the answer to its end first, so the request is finished before the reload
        if (resp.ok) { return resp.text().then(function () { window.location.reload(); }); }
        return resp.json().then(function (problem) {
          out.textContent = "Not done (HTTP " + resp.status + "): " + (problem.detail || problem.error || "");
        }, function () { out.textContent = "Not done (HTTP " + resp.status + ")."; });
      }).catch(function () { out.textContent = "Not done (network error)."; });
    });
  });
});
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
