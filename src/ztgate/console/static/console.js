// The ztgate console's only script (no inline script: the CSP allows 'self' only).
// - login: make a non-extractable ECDSA P-256 key pair, keep it in IndexedDB
//   (under its RFC 7638 thumbprint), send its public JWK with the login form;
// - approval: sign the decision statement with that key before posting it;
// - approvals list: refresh the rows every 2 s; feed: server-sent events.
"use strict";

(function () {
  const DB_NAME = "ztgate-console";
  const STORE = "keys";

  function openDb() {
    return new Promise(function (resolve, reject) {
      const request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = function () { request.result.createObjectStore(STORE); };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }

  async function withStore(mode, work) {
    const db = await openDb();
    try {
      return await new Promise(function (resolve, reject) {
        const tx = db.transaction(STORE, mode);
        const result = work(tx.objectStore(STORE));
        tx.oncomplete = function () { resolve(result.result); };
        tx.onerror = function () { reject(tx.error); };
      });
    } finally {
      db.close();
    }
  }

  function b64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function thumbprint(jwk) {
    // RFC 7638: the required members in lexicographic order, no whitespace.
    const text = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
    return b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  }

  function showError(id, message) {
    const element = document.getElementById(id);
    if (element) { element.textContent = message; element.hidden = false; }
  }

  // -- login ------------------------------------------------------------------
  const loginForm = document.getElementById("login-form");
  if (loginForm) {
    let keyed = false;
    loginForm.addEventListener("submit", async function (event) {
      if (keyed) return;
      event.preventDefault();
      try {
        const pair = await crypto.subtle.generateKey(
          { name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
        const full = await crypto.subtle.exportKey("jwk", pair.publicKey);
        const jwk = { crv: full.crv, kty: full.kty, x: full.x, y: full.y };
        const id = await thumbprint(jwk);
        await withStore("readwrite", function (store) {
          return store.put({ privateKey: pair.privateKey, publicKey: pair.publicKey }, id);
        });
        document.getElementById("public_jwk").value = JSON.stringify(jwk);
        keyed = true;
        loginForm.submit();
      } catch (error) {
        showError("key-error", "This browser cannot make a signing key (WebCrypto and IndexedDB are needed): " + error);
      }
    });
  }

  // -- approve / reject: a signed statement ------------------------------------
  const decideForm = document.getElementById("decide-form");
  if (decideForm) {
    let signed = false;
    decideForm.addEventListener("submit", async function (event) {
      if (signed) return;
      event.preventDefault();
      const button = event.submitter;
      const decision = button && button.dataset.decision;
      if (decision !== "approve" && decision !== "reject") return;
      const data = decideForm.dataset;
      const comment = document.getElementById("comment").value.replace(/\r\n?/g, "\n");
      // RFC 8785 for an object of strings: keys sorted, JSON.stringify's escaping.
      const statement = JSON.stringify({
        approval: data.approval,
        comment: comment,
        decision: decision,
        request_sha256: data.requestSha256,
        session: data.session,
        type: data.statementType,
      });
      try {
        const pair = await withStore("readonly", function (store) {
          return store.get(data.keyThumbprint);
        });
        if (!pair || !pair.privateKey) {
          showError("sign-error", "This browser has no key for this session: log out and log in again.");
          return;
        }
        const signature = await crypto.subtle.sign(
          { name: "ECDSA", hash: "SHA-256" }, pair.privateKey, new TextEncoder().encode(statement));
        decideForm.elements.decision.value = decision;
        decideForm.elements.signature.value = b64url(signature);
        signed = true;
        decideForm.submit();
      } catch (error) {
        showError("sign-error", "Signing the decision failed: " + error);
      }
    });
  }

  // -- the pending list refreshes itself ---------------------------------------
  const rows = document.getElementById("approval-rows");
  if (rows) {
    setInterval(async function () {
      try {
        const response = await fetch(rows.dataset.rowsUrl, { credentials: "same-origin", cache: "no-store" });
        if (response.status === 401) { window.location.reload(); return; }
        if (response.ok) rows.innerHTML = await response.text();
      } catch (error) { /* the next tick tries again */ }
    }, 2000);
  }

  // -- the live feed ---------------------------------------------------------
  const feed = document.getElementById("feed-rows");
  if (feed && window.EventSource) {
    const seen = new Set();
    feed.querySelectorAll("tr[data-seq]").forEach(function (row) { seen.add(row.dataset.seq); });
    const source = new EventSource(feed.dataset.eventsUrl);
    source.addEventListener("decision", function (event) {
      const record = JSON.parse(event.data);
      const seq = String(record.seq);
      if (seen.has(seq)) return;
      seen.add(seq);
      const row = document.createElement("tr");
      row.className = "feed-row";
      row.dataset.outcome = record.outcome;
      row.dataset.seq = seq;
      const when = new Date(record.ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
      [when, record.outcome, record.kind, record.agent, record.tool, record.reason, record.call_id]
        .forEach(function (text, index) {
          const cell = document.createElement("td");
          cell.textContent = text;
          if (index === 1) cell.className = "outcome " + record.outcome;
          row.appendChild(cell);
        });
      feed.insertBefore(row, feed.firstChild);
      while (feed.children.length > 500) feed.removeChild(feed.lastChild);
    });
    source.onerror = function () {
      const status = document.getElementById("feed-status");
      if (status) status.textContent = "Reconnecting…";
    };
    source.onopen = function () {
      const status = document.getElementById("feed-status");
      if (status) status.textContent = "Live: new decisions appear at the top.";
    };
  }
})();
