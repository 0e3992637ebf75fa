// WebAuthn ceremonies for the pages, in plain JavaScript (no build step).
// The pages call the same JSON API as the apps: options from the server,
// the browser's credential back as JSON (WebAuthn Level 3 toJSON and
// parse*OptionsFromJSON), cookie sessions proving CSRF with the page's token.
"use strict";

const privid = (() => {
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  async function postJson(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body || {}),
    });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  // navigator.credentials.create() from the server's options; the result as JSON.
  async function create(options) {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
    const credential = await navigator.credentials.create({ publicKey });
    return credential.toJSON();
  }

  // navigator.credentials.get(); mediation "conditional" waits for the user to
  // pick a passkey from the username field's autofill.
  async function get(options, mediation, signal) {
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
    const request = { publicKey };
    if (mediation) request.mediation = mediation;
    if (signal) request.signal = signal;
    const credential = await navigator.credentials.get(request);
    return credential.toJSON();
  }

  function supported() {
    return typeof PublicKeyCredential !== "undefined" &&
      typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function";
  }

  return { csrfToken, postJson, create, get, supported };
})();
