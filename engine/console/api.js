// The AWS Step Functions JSON API as the console calls it: POST / with X-Amz-Target, the
// session cookie (sent by the browser) and X-Stepline-Console: 1.

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message || code);
    this.code = code;
    this.status = status;
  }
}

const AUTH_CODES = new Set([
  'MissingAuthenticationToken', 'InvalidSignatureException', 'UnrecognizedClientException',
  'IncompleteSignature', 'AccessDeniedException', 'SignatureDoesNotMatch',
]);

/** Calls one API action; rejects with an ApiError carrying the AWS code. */
export async function call(action, body = {}) {
  let res;
  try {
    res = await fetch('/', {
      method: 'POST',
      credentials: 'same-origin',
      headers: {
        'Content-Type': 'application/x-amz-json-1.0',
        'X-Amz-Target': `AWSStepFunctions.${action}`,
        'X-Stepline-Console': '1',
      },
      body: JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError('NetworkError', `The server could not be reached (${e.message}).`, 0);
  }
  let data = {};
  const text = await res.text();
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { __type: 'InternalFailure', message: text };
  }
  if (!res.ok) {
    const code = String(data.__type || `HTTP${res.status}`).split('#').pop();
    const err = new ApiError(code, data.message || data.Message || res.statusText, res.status);
    if (AUTH_CODES.has(code) || res.status === 401 || res.status === 403) {
      window.dispatchEvent(new CustomEvent('stepline:signed-out'));
    }
    throw err;
  }
  return data;
}

/** Follows nextToken up to `maxPages` pages; returns the concatenated `key` lists. */
export async function listAll(action, body, key, maxPages = 20) {
  const items = [];
  let token;
  for (let i = 0; i < maxPages; i++) {
    const page = await call(action, { ...body, ...(token ? { nextToken: token } : {}) });
    items.push(...(page[key] || []));
    token = page.nextToken;
    if (!token) return { items, complete: true };
  }
  return { items, complete: false };
}

async function sessionRequest(method, body) {
  const res = await fetch('/console/session', {
    method,
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-Stepline-Console': '1' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(data.__type || `HTTP${res.status}`, data.message, res.status);
  return data;
}

/** {authRequired, signedIn, accessKeyId} */
export const session = () => sessionRequest('GET');
export async function signIn(accessKeyId, secretAccessKey) {
  const res = await sessionRequest('POST', { accessKeyId, secretAccessKey });
  if (!res.signedIn) throw new ApiError('UnrecognizedClientException', res.message || 'Sign-in failed.', 401);
  return res;
}
export const signOut = () => sessionRequest('DELETE');
