// Passkeys on the sign-in and step-up pages. Password forms work without it.
// Sign-in: conditional mediation (the identifier field's autofill offers
// passkeys) starts on load when the browser supports it; the button asks
// modally. Step-up: a user-verified assertion raises the session.
// Where to go afterwards (data-next) was checked by the server.
"use strict";

(() => {
  const PROBLEM_PREFIX = "https://privid.dev/problems/";

  function slugOf(result) {
    const type = result && result.data && result.data.type;
    return typeof type === "string" && type.startsWith(PROBLEM_PREFIX)
      ? type.slice(PROBLEM_PREFIX.length) : "";
  }

  function show(section, output, key) {
    output.textContent = section.dataset[key] || section.dataset.msgFailed;
    output.hidden = false;
  }

  function failureKey(error) {
    // The user closed the dialog, or it timed out: not a fault of theirs.
    return error && error.name === "NotAllowedError" ? "msgCancelled" : "msgFailed";
  }

  async function signIn(section, output, mediation, signal) {
    const options = await privid.postJson("/api/v1/webauthn/authentication/options");
    if (!options.ok) return show(section, output, "msgFailed");
    const { challenge_id: challengeId, ...publicKey } = options.data;
    const credential = await privid.get(publicKey, mediation, signal);
    const verified = await privid.postJson("/api/v1/webauthn/authentication/verify", {
      ...credential, challenge_id: challengeId, token_delivery: "cookie",
    });
    if (!verified.ok) {
      return show(section, output, slugOf(verified) === "user-verification-required"
        ? "msgUv" : "msgFailed");
    }
    const next = section.dataset.next;
    window.location.assign(verified.data.status === "consent_required"
      ? "/consent?next=" + encodeURIComponent(next) : next);
  }

  function startSignIn(section) {
    const output = document.getElementById("passkey-error");
    const button = document.getElementById("passkey-button");
    if (!privid.supported()) {
      button.disabled = true;
      return show(section, output, "msgUnsupported");
    }
    let conditional = null;
    button.addEventListener("click", async () => {
      output.hidden = true;
      // One request at a time: the modal one replaces the autofill one.
      if (conditional) conditional.abort();
      conditional = null;
      try {
        await signIn(section, output, undefined, undefined);
      } catch (error) {
        show(section, output, failureKey(error));
      }
    });
    // A signed-in visitor is not offered another sign-in from the autofill.
    const available = PublicKeyCredential.isConditionalMediationAvailable;
    if (section.dataset.autofill !== "on" || typeof available !== "function") return;
    available.call(PublicKeyCredential).then((yes) => {
      if (!yes) return;
      conditional = new AbortController();
      const mine = conditional;
      signIn(section, output, "conditional", mine.signal).catch((error) => {
        // Aborted for the button's request: nothing to say.
        if (!mine.signal.aborted) show(section, output, failureKey(error));
      });
    });
  }

  function startStepUp(section) {
    const output = document.getElementById("step-up-passkey-error");
    const button = document.getElementById("step-up-passkey-button");
    if (!privid.supported()) {
      button.disabled = true;
      return show(section, output, "msgUnsupported");
    }
    button.addEventListener("click", async () => {
      output.hidden = true;
      try {
        const options = await privid.postJson("/api/v1/me/step-up/webauthn/options");
        if (!options.ok) return show(section, output, "msgFailed");
        const { challenge_id: challengeId, ...publicKey } = options.data;
        const credential = await privid.get(publicKey);
        const verified = await privid.postJson("/api/v1/me/step-up/webauthn/verify", {
          ...credential, challenge_id: challengeId,
        });
        if (!verified.ok) {
          return show(section, output, slugOf(verified) === "user-verification-required"
            ? "msgUv" : "msgFailed");
        }
        window.location.assign(section.dataset.next);
      } catch (error) {
        show(section, output, failureKey(error));
      }
    });
  }

  const signInSection = document.getElementById("passkey");
  if (signInSection) startSignIn(signInSection);
  const stepUpSection = document.getElementById("step-up-passkey");
  if (stepUpSection) startStepUp(stepUpSection);
})();
