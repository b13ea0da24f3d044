// Calls of the admin API: the token from sessionStorage in the Authorization header, errors as one shape.
import { learnSkew } from "./dom.js";

const KEY = "session-pool-console-token";

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  sessionStorage.setItem(KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(KEY);
}

// The demo and operators may hand the token in the URL fragment (never sent to a server):
// it moves into sessionStorage and leaves the address bar and the history at once.
export function adoptFragmentToken() {
  const match = /^#token=([^&]+)/.exec(location.hash);
  if (!match) return false;
  setToken(decodeURIComponent(match[1]));
  history.replaceState(null, "", `${location.pathname}#/pools`);
  return true;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.kind = body.error || "http_error";
    this.problems = body.problems || [];
  }
}

export async function call(method, path, { query, body, headers } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const init = { method, headers: { Accept: "application/json", ...(headers || {}) }, credentials: "omit" };
  const current = token();
  if (current) init.headers.Authorization = `Bearer ${current}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (exc) {
    throw new ApiError(0, { error: "network", message: "the daemon did not answer (is it running?)" });
  }
  learnSkew(response.headers.get("date"));
  let data = {};
  try {
    data = await response.json();
  } catch (exc) {
    data = { message: `HTTP ${response.status}` };
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  pools: () => call("GET", "/admin/pools"),
  states: (pool) => call("GET", `/admin/pools/${encodeURIComponent(pool)}/states`),
  sessions: (pool, query) => call("GET", `/admin/pools/${encodeURIComponent(pool)}/sessions`, { query }),
  session: (pool, id) => call("GET", `/admin/pools/${encodeURIComponent(pool)}/sessions/${encodeURIComponent(id)}`),
  history: (pool, id, query) =>
    call("GET", `/admin/pools/${encodeURIComponent(pool)}/sessions/${encodeURIComponent(id)}/history`, { query }),
  act: (pool, id, action, body) =>
    call("POST", `/admin/pools/${encodeURIComponent(pool)}/sessions/${encodeURIComponent(id)}/${action}`, { body }),
  bulkUnlock: (pool, body) => call("POST", `/admin/pools/${encodeURIComponent(pool)}/unlock`, { body }),
  audit: (query) => call("GET", "/admin/audit", { query }),
};

// What an error means to an operator, in one line.
export function explain(error) {
  if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
  if (error.status === 0) return `Daemon unreachable: ${error.message}`;
  if (error.status === 401) return `Token refused: ${error.message}`;
  if (error.status === 403) return `Not allowed: ${error.message}`;
  if (error.status === 503) return `MongoDB unreachable: ${error.message}`;
  if (error.status === 504) return `MongoDB did not answer in time: ${error.message}`;
  return error.message;
}
