// The WeChat link page's passkey option: the account's passkey answers a
// username-less challenge, and the pending WeChat sign-in (its ticket, bound
// to this browser's WeChat cookie) is linked to that account over the JSON API.
// The password and phone forms work without it.
"use strict";

(() => {
  const section = document.getElementById("link-passkey");
  if (!section) return;
  const button = document.getElementById("link-passkey-button");
  const output = document.getElementById("link-passkey-error");

  function fail(key) {
    output.textContent = section.dataset[key] || section.dataset.msgFailed;
    output.hidden = false;
  }

  if (!privid.supported()) {
    button.disabled = true;
    fail("msgUnsupported");
    return;
  }
  button.addEventListener("click", async () => {
    output.hidden = true;
    try {
      const options = await privid.postJson("/api/v1/webauthn/authentication/options");
      if (!options.ok) return fail("msgFailed");
      const { challenge_id: challengeId, ...publicKey } = options.data;
      const credential = await privid.get(publicKey);
      const linked = await privid.postJson("/api/v1/login/wechat/link/passkey", {
        ...credential, challenge_id: challengeId, ticket: section.dataset.ticket,
      });
      // 202 is a second factor still owed: the password form handles that case.
      if (!linked.ok || linked.status !== 200) return fail("msgFailed");
      const next = section.dataset.next;
      window.location.assign(linked.data.status === "consent_required"
        ? "/consent?next=" + encodeURIComponent(next) : next);
    } catch (error) {
      fail(error && error.name === "NotAllowedError" ? "msgCancelled" : "msgFailed");
    }
  });
})();
