// Passkeys: the browser's WebAuthn calls for registration and sign-in (app/passkeys.py checks the answers).
// Loaded as a file (no inline script), so the strict CSP holds.
(function () {
  "use strict";

  function toBytes(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfOf(container) {
    // The container's own token, else the page's form token (the sign-in page renders one only,
    // so that its answer does not vary with anything but the message).
    var field = document.querySelector("input[name=csrf_token]");
    return container.dataset.csrf || (field ? field.value : "");
  }

  function post(url, csrf, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json"},
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) { throw new Error(data.error || data.message || ("The server answered " + response.status)); }
        return data;
      });
    });
  }

  function descriptors(list) {
    return (list || []).map(function (item) { return {type: item.type, id: toBytes(item.id), transports: item.transports}; });
  }

  function showError(container, error) {
    var box = container.querySelector(".passkey-error");
    var message = error && error.name === "NotAllowedError"
      ? "The passkey prompt was cancelled or timed out. Try again."
      : (error && error.message) || "The passkey did not work.";
    if (box) { box.textContent = message; }
  }

  function setupRegistration(container) {
    var button = container.querySelector(".passkey-button");
    button.addEventListener("click", function () {
      var csrf = csrfOf(container);
      var nameInput = container.querySelector("input[name=passkey_name]");
      button.disabled = true;
      post(container.dataset.optionsUrl, csrf).then(function (options) {
        options.challenge = toBytes(options.challenge);
        options.user.id = toBytes(options.user.id);
        options.excludeCredentials = descriptors(options.excludeCredentials);
        return navigator.credentials.create({publicKey: options});
      }).then(function (credential) {
        return post(container.dataset.registerUrl, csrf, {
          name: nameInput ? nameInput.value : "",
          credential: {
            id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type,
            response: {
              clientDataJSON: toBase64url(credential.response.clientDataJSON),
              attestationObject: toBase64url(credential.response.attestationObject),
              transports: credential.response.getTransports ? credential.response.getTransports() : []
            },
            clientExtensionResults: credential.getClientExtensionResults()
          }
        });
      }).then(function (result) {
        window.location.assign(result.redirect);
      }).catch(function (error) {
        button.disabled = false;
        showError(container, error);
      });
    });
  }

  function setupSignIn(container) {
    var button = container.querySelector(".passkey-button");
    button.addEventListener("click", function () {
      var csrf = csrfOf(container);
      button.disabled = true;
      post(container.dataset.optionsUrl, csrf).then(function (options) {
        options.challenge = toBytes(options.challenge);
        options.allowCredentials = descriptors(options.allowCredentials);
        return navigator.credentials.get({publicKey: options});
      }).then(function (credential) {
        return post(container.dataset.verifyUrl, csrf, {
          next: container.dataset.next || null,
          credential: {
            id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type,
            response: {
              clientDataJSON: toBase64url(credential.response.clientDataJSON),
              authenticatorData: toBase64url(credential.response.authenticatorData),
              signature: toBase64url(credential.response.signature),
              userHandle: credential.response.userHandle ? toBase64url(credential.response.userHandle) : null
            },
            clientExtensionResults: credential.getClientExtensionResults()
          }
        });
      }).then(function (result) {
        window.location.assign(result.redirect);
      }).catch(function (error) {
        button.disabled = false;
        showError(container, error);
      });
    });
  }

  function setup() {
    var supported = !!(window.PublicKeyCredential && navigator.credentials);
    document.querySelectorAll("[data-passkey-register], [data-passkey-verify]").forEach(function (container) {
      if (!supported) {
        showError(container, new Error("This browser does not support passkeys."));
        container.querySelector(".passkey-button").disabled = true;
        return;
      }
      if (container.hasAttribute("data-passkey-register")) { setupRegistration(container); } else { setupSignIn(container); }
    });
    document.documentElement.dataset.passkeysReady = "1";
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", setup); } else { setup(); }
})();
