"""A small JSON-over-HTTP client for OpenAI-compatible servers (standard library only).

Every request is bounded: a socket timeout per attempt, a fixed number of retries with
exponential backoff on 429 / 5xx / refused connections / timeouts (``Retry-After`` is
honoured up to a cap), and then a one-line :class:`UserError`. Nothing here loops forever.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

from .._errors import UserError

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3  # extra attempts after the first
    backoff_s: float = 0.25  # first wait; doubles each retry
    timeout_s: float = 60.0  # socket timeout of one attempt

    def wait(self, attempt: int, retry_after: float | None) -> float:
        base = self.backoff_s * (2**attempt)
        if retry_after is not None:
            return min(max(base, retry_after), MAX_RETRY_AFTER_S)
        return base


class HTTPStatusError(Exception):
    def __init__(self, status: int, detail: str, retry_after: float | None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class JSONClient:
    """POST/GET JSON to ``base_url`` with retries; raises :class:`UserError` when it gives up."""

    def __init__(
        self,
        base_url: str,
        policy: RetryPolicy,
        api_key: Callable[[], str | None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self._api_key = api_key  # a function, so the key itself is never stored on the client
        self._sleep = sleep

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, body)

    def get(self, path: str) -> dict[str, Any]:
        return self._request("GET", path, None)

    # -- internals ----------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        last: Exception | None = None
        for attempt in range(self.policy.retries + 1):
            try:
                return self._once(method, url, body)
            except HTTPStatusError as err:
                if err.status not in RETRY_STATUS:
                    raise UserError(_refused_message(url, err)) from None
                last, retry_after = err, err.retry_after
            except (ConnectionError, TimeoutError, urllib.error.URLError, http.client.HTTPException) as err:
                last, retry_after = err, None
            if attempt < self.policy.retries:
                self._sleep(self.policy.wait(attempt, retry_after))
        raise UserError(_gave_up_message(url, last, self.policy)) from None

    def _once(self, method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.policy.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise HTTPStatusError(err.code, _error_detail(err), _retry_after(err)) from None
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise UserError(f"server at {url} answered with something that is not JSON: "
                            f"{raw[:120]!r}") from None
        if not isinstance(parsed, dict):
            raise UserError(f"server at {url} answered with JSON that is not an object")
        return parsed


def _error_detail(err: urllib.error.HTTPError) -> str:
    try:
        raw = err.read()[:2000]
    except OSError:
        return err.reason if isinstance(err.reason, str) else ""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:200]
    if isinstance(parsed, dict):
        inner = parsed.get("error", parsed.get("detail", parsed))
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])[:200]
        return json.dumps(inner)[:200]
    return str(parsed)[:200]


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    value = err.headers.get("Retry-After") if err.headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _refused_message(url: str, err: HTTPStatusError) -> str:
    hint = ""
    if err.status in (401, 403):
        hint = " (check the API key: name its environment variable with ?api_key_env=NAME)"
    elif err.status == 404:
        hint = " (check the base URL; it usually ends in /v1)"
    return f"server at {url} refused the request: HTTP {err.status}: {err.detail}{hint}"


def _gave_up_message(url: str, last: Exception | None, policy: RetryPolicy) -> str:
    tries = policy.retries + 1
    if isinstance(last, HTTPStatusError):
        what = f"HTTP {last.status}: {last.detail}"
    elif isinstance(last, urllib.error.URLError):
        what = f"cannot connect ({last.reason}); is the server running?"
    elif isinstance(last, TimeoutError):
        what = f"no answer within {policy.timeout_s:g} s (raise ?timeout=SECONDS)"
    else:
        what = f"{type(last).__name__}: {last}"
    return f"server at {url} failed after {tries} attempts: {what}"
