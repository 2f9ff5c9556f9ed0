// The gateway's web portal. Plain DOM code: every name and path reaches the
// page through textContent or setAttribute, never through HTML parsing.
// Every action goes through the REST API (/api/v1), so large ones are
// backgrounded as for any other client; job changes arrive as Server-Sent
// Events from /api/v1/events.
"use strict";

const API = "/api/v1";
const ACTIVE = new Set(["queued", "running"]);
const KEEP_FINISHED_MS = 10 * 60 * 1000;   // finished jobs stay listed this long
const OP_NAMES = { ItemCopy: "Copy", ItemMove: "Move", ItemDelete: "Delete" };
const JOB_EVENTS = ["snapshot", "created", "state", "progress", "stalled", "message"];

const S = {
  user: null, admin: false, csrf: "", mounts: ["/"],
  path: "/", entries: [],
  jobs: new Map(),        // id -> {job, li, parts, doneAt}
  events: null, retryMs: 1000, retryTimer: null,
  refreshTimer: null, loadSeq: 0,
};

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ helpers

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : String(v));
  }
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function joinPath(dir, name) { return (dir === "/" ? "" : dir) + "/" + name; }
function parentOf(path) { const i = path.lastIndexOf("/"); return i <= 0 ? "/" : path.slice(0, i); }
function nameOf(path) { return path === "/" ? "/" : path.slice(path.lastIndexOf("/") + 1); }
function isUnder(path, root) { return root === "/" || path === root || path.startsWith(root + "/"); }

function encodePath(path) { return path.split("/").map(encodeURIComponent).join("/"); }
function decodePath(text) {
  try { return "/" + text.split("/").filter(Boolean).map(decodeURIComponent).join("/"); }
  catch (e) { return "/"; }
}

function apiUrl(path, params) {
  const q = new URLSearchParams(params || {}).toString();
  return API + path + (q ? "?" + q : "");
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0, v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i];
}

function fmtTime(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

function copyName(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) + " (copy)" + name.slice(dot) : name + " (copy)";
}

function announce(text) {
  // Clear first so the same words twice are still spoken.
  const box = $("announce");
  box.textContent = "";
  window.setTimeout(() => { box.textContent = text; }, 30);
}

function showAlert(text) {
  $("alert-text").textContent = text;
  $("alert").hidden = false;
}

function hideAlert() { $("alert").hidden = true; }

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// One request to the REST API with the session cookie. State-changing calls
// carry the CSRF token; copy/move/delete ask for an asynchronous reply.
async function api(method, path, { params, json, respondAsync } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = S.csrf;
  if (json !== undefined) headers["Content-Type"] = "application/json";
  if (respondAsync) headers.Prefer = "respond-async";
  const resp = await fetch(apiUrl(path, params), {
    method, headers, credentials: "same-origin",
    body: json === undefined ? undefined : JSON.stringify(json),
  });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401) {
    sessionEnded();
    throw new ApiError(401, "Your session has ended; please log in again.");
  }
  if (!resp.ok) throw new ApiError(resp.status, (data && data.error) || resp.statusText || "request failed");
  return { status: resp.status, data };
}

function failed(err) {
  if (err && err.status === 401) return;
  showAlert(err && err.message ? err.message : String(err));
}

// ------------------------------------------------------------------ session

async function boot() {
  wireStatic();
  let resp;
  try {
    resp = await fetch("/ui/session", { headers: { Accept: "application/json" }, credentials: "same-origin" });
  } catch (e) {
    showLogin("The gateway cannot be reached.");
    return;
  }
  if (!resp.ok) { showLogin(""); return; }
  // The server writes the session's CSRF token into the page when the
  // browser navigates to it; /ui/session never tells it.
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  if (csrf) {
    sessionStorage.removeItem("gw-reloaded");
    start({ ...(await resp.json()), csrf });
  } else if (!sessionStorage.getItem("gw-reloaded")) {
    // Arrived from another site: the strict cookie did not come with the
    // page. Load it once more from here, which brings it.
    sessionStorage.setItem("gw-reloaded", "1");
    location.reload();
  } else {
    sessionStorage.removeItem("gw-reloaded");
    showLogin("Please log in again.");
  }
}

function showLogin(message) {
  stopEvents();
  clearJobs();
  S.user = null;
  S.csrf = "";
  $("files-view").hidden = true;
  $("jobs").hidden = true;
  $("logout").hidden = true;
  $("whoami").textContent = "";
  $("login-view").hidden = false;
  $("login-error").textContent = message || "";
  $("login-user").focus();
}

function sessionEnded() {
  if (S.user) showLogin("Your session has ended; please log in again.");
}

async function login(event) {
  event.preventDefault();
  const user = $("login-user").value, password = $("login-password").value;
  $("login-error").textContent = "";
  let resp, data = null;
  try {
    resp = await fetch("/ui/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ user, password }),
    });
    data = await resp.json();
  } catch (e) {
    $("login-error").textContent = "The gateway cannot be reached.";
    return;
  }
  if (!resp.ok) {
    $("login-error").textContent =
      resp.status === 401 ? "Wrong user name or password." : (data && data.error) || "Login failed.";
    return;
  }
  $("login-password").value = "";
  start(data);
}

async function logout() {
  try {
    await fetch("/ui/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": S.csrf } });
  } catch (e) { /* the page forgets the session anyway */ }
  showLogin("You have logged out.");
}

function start(info) {
  S.user = info.user;
  S.admin = !!info.admin;
  S.csrf = info.csrf;
  S.mounts = info.mounts && info.mounts.length ? info.mounts : ["/"];
  hideAlert();
  $("login-view").hidden = true;
  $("files-view").hidden = false;
  $("jobs").hidden = false;
  $("logout").hidden = false;
  $("whoami").textContent = S.admin ? `${S.user} (admin)` : S.user;
  $("jobs-title").textContent = S.admin ? "Actions In Progress (all users)" : "Actions In Progress";
  connectEvents();
  navigate(decodePath(location.hash.slice(1)), false, true);
}

// ------------------------------------------------------------------ files

function navigate(path, focus = true, replace = false) {
  const hash = "#" + encodePath(path);
  if (location.hash !== hash) history[replace ? "replaceState" : "pushState"](null, "", hash);
  loadFolder(path, focus);
}

async function loadFolder(path, focus = false) {
  const seq = ++S.loadSeq;
  const entries = [];
  try {
    let cursor = null;
    do {
      const params = { path, limit: "1000" };
      if (cursor) params.cursor = cursor;
      const { data } = await api("GET", "/fs/list", { params });
      if (seq !== S.loadSeq) return;
      path = data.path || path;
      entries.push(...data.items);
      cursor = data.next_cursor;
    } while (cursor && entries.length < 50000);
  } catch (err) {
    if (seq !== S.loadSeq) return;
    if (err.status === 404 && path !== "/") {
      showAlert(`${path}: not found; showing the top folder.`);
      navigate("/", true, true);
      return;
    }
    failed(err);
    return;
  }
  S.path = path;
  S.entries = entries;
  renderFolder(focus);
}

function sortEntries(entries) {
  return entries.slice().sort((a, b) => {
    if ((a.type === "folder") !== (b.type === "folder")) return a.type === "folder" ? -1 : 1;
    return a.name.localeCompare(b.name, undefined, { numeric: true, sensitivity: "base" });
  });
}

function renderFolder(focus) {
  // A refresh replaces the rows: keep the keyboard focus on the same control.
  const active = document.activeElement;
  const row = active && active.closest("#file-rows tr");
  const kept = row ? { name: row.dataset.name, label: active.textContent } : null;
  document.title = `${S.path} · Gateway`;
  $("files-caption").textContent = `Files in ${S.path}`;
  renderPlaces();
  renderCrumbs();
  const body = $("file-rows");
  const rows = sortEntries(S.entries).map(fileRow);
  body.replaceChildren(...rows);
  $("files-table").dataset.path = S.path;
  $("files-empty").hidden = rows.length > 0;
  const here = document.querySelector("#crumbs [aria-current]");
  if (kept) {
    const again = rows.find((tr) => tr.dataset.name === kept.name);
    const control = again && Array.from(again.querySelectorAll("a, button")).find((c) => c.textContent === kept.label);
    (control || here).focus();
  } else if (focus) {
    here.focus();
  }
}

function renderPlaces() {
  const items = S.mounts.map((mount) => {
    const li = el("li");
    const a = el("a", { href: "#" + encodePath(mount) }, mount === "/" ? "Home" : mount);
    const best = S.mounts.filter((m) => isUnder(S.path, m)).sort((x, y) => y.length - x.length)[0];
    if (mount === best) a.setAttribute("aria-current", "true");
    li.append(a);
    return li;
  });
  $("places").replaceChildren(...items);
}

function renderCrumbs() {
  const parts = S.path.split("/").filter(Boolean);
  const items = [];
  let acc = "";
  const crumb = (label, path, last) => {
    const li = el("li");
    const a = el("a", { href: "#" + encodePath(path) }, label);
    if (last) { a.setAttribute("aria-current", "page"); a.setAttribute("tabindex", "-1"); }
    li.append(a);
    return li;
  };
  items.push(crumb("Home", "/", parts.length === 0));
  parts.forEach((p, i) => { acc += "/" + p; items.push(crumb(p, acc, i === parts.length - 1)); });
  $("crumbs").replaceChildren(...items);
}

function fileRow(entry) {
  const folder = entry.type === "folder";
  const tr = el("tr", { "data-name": entry.name, "data-type": entry.type });
  const name = el("td", { class: "name" });
  name.append(el("span", { class: "kind", "aria-hidden": "true" }, folder ? "▸" : "·"));
  const link = folder
    ? el("a", { href: "#" + encodePath(entry.path) }, entry.name)
    : el("a", { href: apiUrl("/fs/content", { path: entry.path }), download: entry.name }, entry.name);
  if (!folder) link.setAttribute("aria-label", `Download ${entry.name}`);
  name.append(link);
  if (folder && S.mounts.includes(entry.path)) name.append(el("span", { class: "muted" }, " (mount)"));
  const actions = el("td");
  const box = el("div", { class: "row-actions" });
  const button = (label, handler, cls) => {
    const b = el("button", { type: "button", class: cls || null, "aria-label": `${label} ${entry.name}` }, label);
    b.addEventListener("click", () => handler(entry));
    return b;
  };
  box.append(button("Rename", renameEntry), button("Copy", copyEntry), button("Move", moveEntry),
    button("Delete", deleteEntry, "danger"));
  actions.append(box);
  tr.append(name, el("td", { class: "num" }, folder ? "" : fmtBytes(entry.size)),
    el("td", { class: "mtime" }, fmtTime(entry.mtime)), actions);
  return tr;
}

function scheduleRefresh() {
  window.clearTimeout(S.refreshTimer);
  S.refreshTimer = window.setTimeout(() => { if (S.user) loadFolder(S.path); }, 250);
}

// ------------------------------------------------------------------ dialogs

// Resolves to {value, overwrite} on OK, or null when dismissed.
function ask({ title, message, label, value, okLabel, overwrite, danger }) {
  const dialog = $("dialog");
  if (dialog.open) return Promise.resolve(null);  // one question at a time
  $("dialog-title").textContent = title;
  $("dialog-message").textContent = message || "";
  $("dialog-message").hidden = !message;
  $("dialog-field").hidden = label === undefined;
  $("dialog-label").textContent = label || "";
  const input = $("dialog-input");
  input.value = value || "";
  input.required = label !== undefined;
  $("dialog-overwrite-box").hidden = !overwrite;
  $("dialog-overwrite").checked = false;
  const ok = $("dialog-ok");
  ok.textContent = okLabel || "OK";
  ok.classList.toggle("danger", !!danger);
  return new Promise((resolve) => {
    let answer = null;
    const form = $("dialog-form");
    const cancel = $("dialog-cancel");
    const onSubmit = (event) => {
      if (label !== undefined && !input.value.trim()) { event.preventDefault(); return; }
      answer = { value: input.value.trim(), overwrite: $("dialog-overwrite").checked };
    };
    const onCancel = () => dialog.close();
    const onClose = () => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("close", onClose);
      resolve(answer);
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    if (label !== undefined) {
      input.focus();
      const dot = input.value.lastIndexOf(".");
      const slash = input.value.lastIndexOf("/") + 1;
      input.setSelectionRange(slash, dot > slash ? dot : input.value.length);
    } else {
      ok.focus();
    }
  });
}

function badName(name) {
  return !name || name === "." || name === ".." || name.includes("/");
}

async function makeFolder() {
  const answer = await ask({ title: "New folder", label: "Folder name", okLabel: "Create" });
  if (!answer) return;
  if (badName(answer.value)) { showAlert("A folder name cannot be empty or contain '/'."); return; }
  try {
    await api("POST", "/fs/mkdir", { json: { path: joinPath(S.path, answer.value) } });
    announce(`Folder ${answer.value} created.`);
    loadFolder(S.path);
  } catch (err) { failed(err); }
}

async function renameEntry(entry) {
  const answer = await ask({ title: `Rename ${entry.name}`, label: "New name", value: entry.name, okLabel: "Rename" });
  if (!answer || answer.value === entry.name) return;
  if (badName(answer.value)) { showAlert("A name cannot be empty or contain '/'."); return; }
  transfer("move", entry.path, joinPath(parentOf(entry.path), answer.value), false);
}

async function copyEntry(entry) {
  const answer = await ask({
    title: `Copy ${entry.name}`, label: "Copy to (full path)",
    value: joinPath(parentOf(entry.path), copyName(entry.name)), okLabel: "Copy", overwrite: true,
  });
  if (answer) transfer("copy", entry.path, answer.value, answer.overwrite);
}

async function moveEntry(entry) {
  const answer = await ask({
    title: `Move ${entry.name}`, label: "Move to (full path)", value: entry.path, okLabel: "Move", overwrite: true,
  });
  if (answer && answer.value !== entry.path) transfer("move", entry.path, answer.value, answer.overwrite);
}

async function deleteEntry(entry) {
  const what = entry.type === "folder" ? `the folder ${entry.name} and everything in it` : entry.name;
  const answer = await ask({ title: "Delete", message: `Delete ${what}?`, okLabel: "Delete", danger: true });
  if (!answer) return;
  try {
    const { status, data } = await api("POST", "/fs/delete", { json: { path: entry.path }, respondAsync: true });
    accepted(status, data, "ItemDelete", entry.path, null);
  } catch (err) { failed(err); }
}

async function transfer(op, from, to, overwrite) {
  if (!to.startsWith("/")) to = joinPath(S.path, to);
  try {
    const { status, data } = await api("POST", `/fs/${op}`, { json: { from, to, overwrite }, respondAsync: true });
    accepted(status, data, op === "copy" ? "ItemCopy" : "ItemMove", from, to);
  } catch (err) { failed(err); }
}

// A 202 names a background job: list it at once (the event stream fills in
// its progress). Either way this session's listing already shows the outcome.
function accepted(status, data, operation, from, to) {
  if (status === 202 && data && data.id) {
    if (!S.jobs.has(data.id)) {
      upsertJob({ id: data.id, operation: data.operation || operation, state: "queued", from, to,
                  owner: S.user, percentageComplete: data.percentageComplete || 0, itemsDone: 0, itemsTotal: 0,
                  bytesDone: 0, bytesTotal: 0, createdAt: Date.now() / 1000 }, true);
    }
    announce(`${OP_NAMES[operation]} of ${nameOf(from)} started in the background.`);
  } else {
    announce(`${OP_NAMES[operation]} of ${nameOf(from)} done.`);
  }
  loadFolder(S.path);
}

// ------------------------------------------------------------------ uploads

let uploadQueue = [];
let uploadsRunning = 0;

async function uploadFiles(fileList) {
  const files = Array.from(fileList).filter((f) => f && f.name);
  if (!files.length) return;
  const dir = S.path;
  const existing = new Set(S.entries.map((e) => e.name));
  const clashes = files.filter((f) => existing.has(f.name));
  let skip = new Set();
  if (clashes.length) {
    const names = clashes.map((f) => f.name).join(", ");
    const answer = await ask({ title: "Replace files?", message: `Already here: ${names}. Replace them?`,
                               okLabel: "Replace" });
    if (!answer) skip = new Set(clashes);
  }
  for (const file of files) {
    if (!skip.has(file)) uploadQueue.push({ file, dir, item: uploadItem(file) });
  }
  pumpUploads();
}

function uploadItem(file) {
  $("uploads-box").hidden = false;
  const li = el("li", { "data-name": file.name });
  const label = el("span", { class: "upload-name" }, file.name);
  const bar = el("progress", { max: "100", value: "0", "aria-label": `Upload of ${file.name}` });
  const status = el("span", { class: "muted" }, "waiting");
  li.append(label, bar, status);
  $("uploads").append(li);
  return { li, bar, status };
}

function pumpUploads() {
  while (uploadsRunning < 2 && uploadQueue.length) {
    const next = uploadQueue.shift();
    uploadsRunning++;
    uploadOne(next).finally(() => { uploadsRunning--; pumpUploads(); });
  }
}

function uploadOne({ file, dir, item }) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", apiUrl("/fs/content", { path: joinPath(dir, file.name) }));
    xhr.setRequestHeader("X-CSRF-Token", S.csrf);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    item.status.textContent = "uploading";
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const pct = e.total ? Math.floor((100 * e.loaded) / e.total) : 100;
      item.bar.value = pct;
      item.status.textContent = `${pct}% · ${fmtBytes(e.loaded)} of ${fmtBytes(e.total)}`;
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        item.bar.value = 100;
        item.status.textContent = "done";
        announce(`Uploaded ${file.name}.`);
        window.setTimeout(() => { item.li.remove(); $("uploads-box").hidden = !$("uploads").children.length; }, 4000);
        if (dir === S.path) scheduleRefresh();
      } else {
        let message = xhr.statusText;
        try { message = JSON.parse(xhr.responseText).error || message; } catch (e) { /* keep statusText */ }
        item.status.textContent = `failed: ${message}`;
        item.li.classList.add("error");
        if (xhr.status === 401) sessionEnded();
        else showAlert(`Upload of ${file.name} failed: ${message}`);
      }
      resolve();
    });
    xhr.addEventListener("error", () => {
      item.status.textContent = "failed: connection lost";
      showAlert(`Upload of ${file.name} failed: connection lost`);
      resolve();
    });
    xhr.send(file);
  });
}

// ------------------------------------------------------------------ jobs

function connectEvents() {
  stopEvents();
  const source = new EventSource(API + "/events");
  const onEvent = (event) => {
    let job;
    try { job = JSON.parse(event.data); } catch (e) { return; }
    if (job && job.id) upsertJob(job, false);
  };
  JOB_EVENTS.forEach((kind) => source.addEventListener(kind, onEvent));
  source.addEventListener("open", () => { S.retryMs = 1000; });
  source.addEventListener("error", () => {
    // CONNECTING: the browser retries by itself. CLOSED: it gave up (the
    // session may have ended), so check the session and try again later.
    if (source.readyState !== EventSource.CLOSED || S.events !== source) return;
    S.events = null;
    S.retryTimer = window.setTimeout(reconnectEvents, S.retryMs);
    S.retryMs = Math.min(S.retryMs * 2, 30000);
  });
  S.events = source;
}

async function reconnectEvents() {
  if (!S.user) return;
  try {
    const resp = await fetch("/ui/session", { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (resp.status === 401) { sessionEnded(); return; }
  } catch (e) { /* offline: try the stream anyway, it backs off */ }
  if (S.user) connectEvents();
}

function stopEvents() {
  window.clearTimeout(S.retryTimer);
  if (S.events) S.events.close();
  S.events = null;
}

function jobParts() {
  const li = el("li", { class: "job", tabindex: "-1" });
  const top = el("div", { class: "job-top" });
  const parts = {
    op: el("span", { class: "job-op" }),
    state: el("span", { class: "job-state" }),
    stuck: el("span", { class: "job-flag", hidden: true }, "stuck"),
    stalled: el("span", { class: "job-flag job-stalled", hidden: true }, "stalled"),
    owner: el("span", { class: "job-owner", hidden: true }),
    from: el("span", { class: "job-from" }),
    arrow: el("span", { "aria-hidden": "true" }, " → "),
    arrowText: el("span", { class: "sr-only" }, " to "),
    to: el("span", { class: "job-to" }),
    bar: el("progress", { class: "job-bar", max: "100", value: "0" }),
    stats: el("div", { class: "job-stats" }),
    error: el("div", { class: "job-error", hidden: true }),
    action: el("button", { type: "button", class: "job-action" }),
    retry: el("button", { type: "button", class: "job-action job-retry", hidden: true }, "Retry"),
    abandon: el("button", { type: "button", class: "job-action job-abandon", hidden: true }, "Abandon"),
    leftovers: el("div", { class: "job-error job-leftovers", hidden: true }),
  };
  top.append(parts.op, parts.state, parts.stuck, parts.stalled, parts.owner);
  const paths = el("div", { class: "job-paths" });
  paths.append(parts.from, parts.arrow, parts.arrowText, parts.to);
  const actions = el("div", { class: "job-actions" });
  actions.append(parts.action, parts.retry, parts.abandon);
  li.append(top, paths, parts.bar, parts.stats, parts.error, parts.leftovers, actions);
  return { li, parts };
}

function upsertJob(job, fromRequest) {
  let rec = S.jobs.get(job.id);
  if (!rec) {
    if (!ACTIVE.has(job.state) && finishedLongAgo(job)) return;
    const { li, parts } = jobParts();
    rec = { job: {}, li, parts, doneAt: null };
    parts.action.addEventListener("click", () => jobAction(rec));
    parts.retry.addEventListener("click", () => jobAction(rec, "retry"));
    parts.abandon.addEventListener("click", () => jobAction(rec, "abandon"));
    S.jobs.set(job.id, rec);
    placeJob(rec, job);
    if (!fromRequest && ACTIVE.has(job.state) && job.owner === S.user) {
      // Started elsewhere (another tab, FTP, WebDAV ...) by this user.
      announce(`${opName(job)} of ${nameOf(job.from || "")} is ${job.state}.`);
    }
  }
  const before = rec.job;
  rec.job = Object.assign({}, before, job);
  renderJob(rec);
  const wasActive = before.state === undefined || ACTIVE.has(before.state);
  if (wasActive && !ACTIVE.has(rec.job.state)) jobFinished(rec, before.state !== undefined);
  updateBadge();
}

function finishedLongAgo(job) {
  const at = job.finishedAt || job.createdAt;
  return at && Date.now() - at * 1000 > KEEP_FINISHED_MS;
}

function placeJob(rec, job) {
  const list = $("jobs-list");
  const created = job.createdAt || Date.now() / 1000;
  rec.li.dataset.created = String(created);
  const after = Array.from(list.children).find((li) => Number(li.dataset.created) < created);
  list.insertBefore(rec.li, after || null);
  $("jobs-empty").hidden = true;
}

function opName(job) { return OP_NAMES[job.operation] || job.operation || "Job"; }

function renderJob(rec) {
  const job = rec.job, p = rec.parts;
  const pct = Number(job.percentageComplete || 0);
  const name = opName(job);
  rec.li.dataset.jobId = job.id;
  rec.li.dataset.state = job.state;
  p.op.textContent = name;
  p.state.textContent = job.state + (job.state === "running" && job.phase === "cleanup" ? " (finishing)" : "");
  p.stuck.hidden = !job.stuck;
  p.stalled.hidden = !job.stalled;
  p.leftovers.hidden = !job.leftovers;
  p.leftovers.textContent = job.leftovers ? `Left behind: ${job.leftovers}` : "";
  // An admin answers a stalled job: run it again now, or give it up.
  p.retry.hidden = p.abandon.hidden = !(S.admin && job.stalled && ACTIVE.has(job.state));
  p.retry.setAttribute("aria-label", `Retry ${name.toLowerCase()} of ${job.from || ""}`);
  p.abandon.setAttribute("aria-label", `Abandon ${name.toLowerCase()} of ${job.from || ""}`);
  p.owner.hidden = !S.admin;
  p.owner.textContent = `by ${job.owner || "?"}`;
  p.from.textContent = job.from || "";
  const hasTo = !!job.to;
  p.arrow.hidden = p.arrowText.hidden = p.to.hidden = !hasTo;
  p.to.textContent = job.to || "";
  p.bar.value = pct;
  p.bar.setAttribute("aria-label", `${name} ${job.from || ""} progress`);
  p.bar.setAttribute("aria-valuetext", `${pct.toFixed(1)}%`);
  const stats = [`${pct.toFixed(1)}%`];
  if (job.itemsTotal || job.itemsDone) {
    stats.push(`${job.itemsDone || 0}${job.enumerated === false ? "" : " / " + (job.itemsTotal || 0)} items`);
  }
  if (job.bytesTotal && job.operation !== "ItemDelete") stats.push(`${fmtBytes(job.bytesDone || 0)} / ${fmtBytes(job.bytesTotal)}`);
  if (job.state === "running" && job.etaSeconds) stats.push(`about ${Math.ceil(job.etaSeconds)} s left`);
  p.stats.textContent = stats.join(" · ");
  p.error.hidden = !job.error;
  p.error.textContent = job.state === "failed" ? `Error: ${job.error}` : job.error || "";
  const verb = job.state === "queued" ? "Cancel" : job.state === "running" && job.phase !== "cleanup" ? "Stop" : null;
  if (!verb && document.activeElement === p.action) rec.li.focus();  // keep keyboard focus in the list
  p.action.hidden = !verb;
  if (verb) {
    p.action.textContent = verb;
    p.action.setAttribute("aria-label", `${verb} ${name.toLowerCase()} of ${job.from || ""}`);
  }
}

function jobFinished(rec, transition) {
  rec.doneAt = Date.now();
  const job = rec.job;
  if (!transition) return;
  const outcome = job.state === "completed" ? "completed" : `${job.state}${job.error ? ": " + job.error : ""}`;
  announce(`${opName(job)} of ${nameOf(job.from || "")} ${outcome}.`);
  const touchesHere = [job.from, job.to].some((p) => p && (parentOf(p) === S.path || isUnder(S.path, p)));
  if (job.owner === S.user || touchesHere) scheduleRefresh();
}

async function jobAction(rec, chosen) {
  // aria-disabled, not disabled: a disabled button drops the keyboard focus.
  if (rec.busy) return;
  const job = rec.job;
  const verb = chosen || (job.state === "queued" ? "cancel" : "stop");
  rec.busy = true;
  rec.parts.action.setAttribute("aria-disabled", "true");
  try {
    const { data } = await api("POST", `/jobs/${encodeURIComponent(job.id)}/${verb}`);
    if (data && data.id) upsertJob(data, false);
  } catch (err) {
    failed(err);
  } finally {
    rec.busy = false;
    rec.parts.action.removeAttribute("aria-disabled");
  }
}

function updateBadge() {
  let active = 0;
  for (const rec of S.jobs.values()) if (ACTIVE.has(rec.job.state)) active++;
  const badge = $("jobs-badge");
  badge.textContent = String(active);
  badge.dataset.count = String(active);
  $("jobs-toggle").setAttribute("aria-label", `Actions In Progress: ${active} running or queued`);
  $("jobs-empty").hidden = S.jobs.size > 0;
}

function pruneJobs(all) {
  const now = Date.now();
  for (const [id, rec] of S.jobs) {
    if (!ACTIVE.has(rec.job.state) && (all || (rec.doneAt && now - rec.doneAt > KEEP_FINISHED_MS))) {
      if (rec.li.contains(document.activeElement)) $("jobs-toggle").focus();
      rec.li.remove();
      S.jobs.delete(id);
    }
  }
  updateBadge();
}

function clearJobs() {
  for (const rec of S.jobs.values()) rec.li.remove();
  S.jobs.clear();
  updateBadge();
}

// The dropdown: a disclosure button and its panel; Escape closes it.
function setJobsOpen(open, focusToggle) {
  $("jobs-panel").hidden = !open;
  $("jobs-toggle").setAttribute("aria-expanded", String(open));
  if (!open && focusToggle) $("jobs-toggle").focus();
}

// ------------------------------------------------------------------ wiring

function wireStatic() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("alert-close").addEventListener("click", hideAlert);
  $("mkdir").addEventListener("click", makeFolder);
  $("refresh").addEventListener("click", () => loadFolder(S.path));
  $("upload").addEventListener("click", () => $("upload-input").click());
  $("upload-input").addEventListener("change", (e) => { uploadFiles(e.target.files); e.target.value = ""; });
  $("jobs-toggle").addEventListener("click", () => setJobsOpen($("jobs-panel").hidden, false));
  $("jobs-clear").addEventListener("click", () => pruneJobs(true));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("jobs-panel").hidden && !$("dialog").open) {
      e.preventDefault();
      setJobsOpen(false, true);
    }
  });
  document.addEventListener("click", (e) => {
    if (!$("jobs-panel").hidden && !$("jobs").contains(e.target) && e.target.isConnected) setJobsOpen(false, false);
  });
  window.addEventListener("popstate", () => { if (S.user) loadFolder(decodePath(location.hash.slice(1))); });
  document.addEventListener("click", (e) => {
    // In-page folder links: history entry + load, without a full reload.
    const a = e.target.closest && e.target.closest("#files-view a[href^='#']");
    if (!a || !S.user || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    navigate(decodePath(a.getAttribute("href").slice(1)));
  });
  const drop = $("drop");
  let depth = 0;
  drop.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) drop.classList.remove("over"); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; });
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    drop.classList.remove("over");
    const files = [];
    let folders = 0;
    for (const item of Array.from(e.dataTransfer.items || [])) {
      if (item.kind !== "file") continue;
      const entry = item.webkitGetAsEntry && item.webkitGetAsEntry();
      if (entry && entry.isDirectory) folders++;
      else if (item.getAsFile()) files.push(item.getAsFile());
    }
    if (folders) showAlert("Folders cannot be dropped here; drop the files inside them.");
    uploadFiles(files.length || folders ? files : e.dataTransfer.files);
  });
  // A file dropped beside the drop zone must not replace the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  window.setInterval(() => pruneJobs(false), 30000);
}

document.addEventListener("DOMContentLoaded", boot);
