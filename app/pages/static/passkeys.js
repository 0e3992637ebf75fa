// Adding a passkey on /account/passkeys: options from the JSON API, the
// browser's credential back to it. Without JavaScript or WebAuthn the page
// says so and the rest of it still works.
"use strict";

(() => {
  const box = document.getElementById("passkey-add");
  const button = document.getElementById("passkey-add-button");
  const errorBox = document.getElementById("passkey-add-error");
  const messages = document.getElementById("passkey-messages");
  if (!box || !button || !privid.supported()) return;
  box.hidden = false;
  document.getElementById("passkey-unsupported").hidden = true;

  function fail(kind) {
    errorBox.textContent = messages.dataset[kind] || messages.dataset.failed;
    errorBox.hidden = false;
  }

  function isStepUp(result) {
    const type = result.data && result.data.type ? String(result.data.type) : "";
    return result.status === 401 && type.endsWith("/insufficient-user-authentication");
  }

  button.addEventListener("click", async () => {
    errorBox.hidden = true;
    button.disabled = true;
    try {
      const options = await privid.postJson("/api/v1/webauthn/registration/options");
      if (isStepUp(options)) {
        // A recent sign-in is needed first; the step-up page brings the person back.
        window.location.assign("/step-up?next=" + encodeURIComponent("/account/passkeys"));
        return;
      }
      if (options.status === 403) { fail("consent"); return; }
      if (!options.ok) { fail("failed"); return; }
      let credential;
      try {
        credential = await privid.create(options.data);
      } catch (_) {
        fail("cancelled");
        return;
      }
      const nickname = document.getElementById("passkey-nickname").value.trim();
      const body = { ...credential, challenge_id: options.data.challenge_id };
      if (nickname) body.nickname = nickname;
      const verified = await privid.postJson("/api/v1/webauthn/registration/verify", body);
      if (isStepUp(verified)) {
        window.location.assign("/step-up?next=" + encodeURIComponent("/account/passkeys"));
        return;
      }
      if (!verified.ok) { fail("failed"); return; }
      window.location.assign("/account/passkeys?done=passkey-added");
    } finally {
      button.disabled = false;
    }
  });
})();
