// "Try it" on /api/v1/docs: each operation's form sends its request to this
// gateway with the credentials given at the top of the page (kept in this
// page only) and shows the reply. Plain DOM code: replies reach the page
// through textContent, never through HTML parsing.
"use strict";

const SHOWN_HEADERS = ["content-type", "location", "preference-applied", "retry-after", "www-authenticate"];
const MAX_SHOWN = 64 * 1024;   // characters of a reply's body shown; the rest is counted

function basic(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  return "Basic " + btoa(String.fromCharCode(...bytes));
}

function authorization() {
  const token = document.getElementById("cred-token").value.trim();
  if (token) return "Bearer " + token;
  const user = document.getElementById("cred-user").value;
  // None given: the portal's cookie, if this browser has a session there.
  return user ? basic(user, document.getElementById("cred-password").value) : null;
}

function request(form) {
  let path = form.dataset.path;
  const query = new URLSearchParams();
  // No Basic challenge for a wrong password: the reply shows the 401, the
  // browser pops no password dialog of its own.
  const headers = new Headers({ "X-Requested-With": "XMLHttpRequest" });
  for (const input of form.querySelectorAll("input[data-in]")) {
    const value = input.value;
    if (input.dataset.in === "path") {
      path = path.replace(`{${input.name}}`, encodeURIComponent(value));
    } else if (value !== "") {
      if (input.dataset.in === "query") query.append(input.name, value);
      else headers.set(input.name, value);
    }
  }
  const auth = authorization();
  if (auth) headers.set("Authorization", auth);
  let body;
  const json = form.querySelector("textarea[name=body]");
  const file = form.querySelector("input[type=file]");
  if (json && json.value.trim() !== "") {
    headers.set("Content-Type", "application/json");
    body = json.value;
  } else if (file && file.files.length) {
    headers.set("Content-Type", "application/octet-stream");
    body = file.files[0];
  }
  const url = path + (query.toString() ? "?" + query : "");
  return { url, init: { method: form.dataset.method, headers, body, credentials: "same-origin" } };
}

async function send(form) {
  const out = form.querySelector("pre");
  const stop = form.querySelector("button[name=stop]");
  const controller = new AbortController();
  stop.hidden = false;
  stop.onclick = () => controller.abort();
  const { url, init } = request(form);
  out.textContent = `${init.method} ${url}\n…`;
  try {
    const resp = await fetch(url, { ...init, signal: controller.signal });
    let head = `${init.method} ${url}\n${resp.status} ${resp.statusText}\n`;
    for (const name of SHOWN_HEADERS) {
      if (resp.headers.has(name)) head += `${name}: ${resp.headers.get(name)}\n`;
    }
    out.textContent = head + "\n";
    const type = resp.headers.get("content-type") || "";
    if (!/^(application\/json|text\/)/.test(type)) {
      const data = await resp.arrayBuffer();
      out.textContent += `(${data.byteLength} bytes of ${type || "data"})`;
      return;
    }
    // Streamed as it arrives (an event stream runs until Stop).
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let shown = 0, more = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      const room = Math.max(0, MAX_SHOWN - shown);
      out.textContent += text.slice(0, room);
      shown += Math.min(room, text.length);
      more += Math.max(0, text.length - room);
    }
    if (more) out.textContent += `\n… ${more} more characters`;
  } catch (err) {
    out.textContent += `\n${controller.signal.aborted ? "stopped" : "failed: " + err.message}`;
  } finally {
    stop.hidden = true;
  }
}

for (const form of document.querySelectorAll("form.try")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(form);
  });
}
document.getElementById("credentials").addEventListener("submit", (event) => event.preventDefault());
