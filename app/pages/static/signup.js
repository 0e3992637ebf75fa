// Live password feedback on the sign-up form: after a pause in typing, ask the
// server's password policy (POST /api/v1/password/check) and announce its
// verdict, in the page's language, in the aria-live region under the field.
"use strict";

(() => {
  const holder = document.getElementById("password-field");
  const input = document.getElementById("password");
  const output = document.getElementById("password-feedback");
  if (!holder || !input || !output) return;
  const form = input.form;
  const PAUSE_MS = 400;
  let timer = null;
  let asked = 0;

  function value(name) {
    const field = form.elements.namedItem(name);
    return field && field.value ? field.value : null;
  }

  async function judge() {
    const password = input.value;
    const mine = ++asked;
    if (!password) {
      output.textContent = "";
      return;
    }
    const body = { password, email: value("email"), phone: value("phone"), full_name: value("full_name") };
    const answer = await privid.postJson("/api/v1/password/check", body);
    // A slower answer to an earlier question must not overwrite a newer one.
    if (mine !== asked || !answer.ok || !answer.data) return;
    if (answer.data.acceptable) {
      output.textContent = holder.dataset.ok;
      output.className = "password-feedback password-ok";
    } else {
      const key = "reason" + answer.data.reason.split("_").map((w) => w[0].toUpperCase() + w.slice(1)).join("");
      output.textContent = holder.dataset[key] || "";
      output.className = "password-feedback password-refused";
    }
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(judge, PAUSE_MS);
  });
})();
