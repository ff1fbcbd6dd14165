"""Run-failure alert: a Dagster run-failure sensor that posts one message per failed run to a
chat (a Slack-compatible webhook and/or a Telegram bot), so a failed 06:00 run is seen the same
morning, not when someone opens the UI.

Configured only from the environment (docs/ALERTS.md):
- VORONKA_ALERT_WEBHOOK_URL: POST {"text": ...} (Slack incoming webhook, Mattermost,
  Rocket.Chat, or any receiver that takes that JSON).
- VORONKA_ALERT_TELEGRAM_BOT_TOKEN + VORONKA_ALERT_TELEGRAM_CHAT_ID: Telegram Bot API
  sendMessage (VORONKA_ALERT_TELEGRAM_API_URL overrides https://api.telegram.org, e.g. for a
  proxy or a local receiver).
- DAGSTER_WEBSERVER_URL (optional): the message links to the run's page in the Dagster UI.

The sensor is registered only when a destination is configured (no idle sensor in the UI);
it starts RUNNING, watches every run of the instance, and like every sensor it needs `dagster
dev` or `dagster-daemon`; a headless runner can call send_failure_alert itself. The URLs
and the token are secrets: they never appear in the message, in errors or in logs, and any
secret-looking environment value that a failure's error text contains is masked.
"""

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
import requests

from extractors.http import Redactor

SENSOR_NAME = "alert_on_run_failure"
WEBHOOK_ENV = "VORONKA_ALERT_WEBHOOK_URL"
TELEGRAM_TOKEN_ENV = "VORONKA_ALERT_TELEGRAM_BOT_TOKEN"
TELEGRAM_CHAT_ENV = "VORONKA_ALERT_TELEGRAM_CHAT_ID"
TELEGRAM_API_ENV = "VORONKA_ALERT_TELEGRAM_API_URL"
TELEGRAM_API = "https://api.telegram.org"
UI_ENV = "DAGSTER_WEBSERVER_URL"
ALERTED_TAG = "voronka/failure_alert_sent"  # the destinations reached, set once posted
TIMEOUT_S = 10.0
MAX_CHARS = 3500  # Telegram refuses messages over 4096 characters
# environment variables whose values are secrets wherever they show up
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|WEBHOOK|_KEY|DSN|CREDENTIAL", re.I)
_DSN_PASSWORD = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@")
# Dagster's wrappers around the user's exception: the first line worth reading is below them
_WRAPPERS = frozenset({"DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"})


class AlertDeliveryError(RuntimeError):
    """A destination refused the alert or could not be reached; names it, never its URL."""


@dataclass(frozen=True)
class Destination:
    """Where an alert goes. `url` carries the secret; `name` is what errors may show."""

    name: str
    url: str
    payload: Callable[[str], dict[str, Any]]


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def destinations() -> list[Destination]:
    """The configured destinations; a half-configured Telegram bot is an error naming the
    missing variable (a silent no-alert setup is worse than a failing one)."""
    found = []
    webhook = _env(WEBHOOK_ENV)
    if webhook:
        found.append(Destination("webhook", webhook, lambda text: {"text": text}))
    token, chat = _env(TELEGRAM_TOKEN_ENV), _env(TELEGRAM_CHAT_ENV)
    if bool(token) != bool(chat):
        missing = TELEGRAM_CHAT_ENV if token else TELEGRAM_TOKEN_ENV
        raise ValueError(f"Telegram alerts need both {TELEGRAM_TOKEN_ENV} and "
                         f"{TELEGRAM_CHAT_ENV}: set {missing}")
    if token:
        api = (_env(TELEGRAM_API_ENV) or TELEGRAM_API).rstrip("/")
        found.append(Destination(
            "telegram", f"{api}/bot{token}/sendMessage",
            lambda text: {"chat_id": chat, "text": text, "disable_web_page_preview": True},
        ))
    return found


def secret_redactor() -> Redactor:
    """Masks the values of secret-named environment variables (tokens, passwords, webhook
    URLs, DSNs) and bearer / token=... fragments in any text."""
    values = [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v.strip()) >= 6]
    return Redactor([v.strip() for v in values])


def _user_error(error: Any) -> Any:
    """The user's exception under Dagster's step-execution wrappers."""
    while error is not None and error.cls_name in _WRAPPERS and error.cause is not None:
        error = error.cause
    return error


def _first_line(text: str | None) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def _step_failures(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(step key, first line of its error) of each failed step, in order."""
    failures = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        error = _user_error(event.step_failure_data.error) if event else None
        failures.append((event.step_key or "?", _first_line(error.to_string() if error
                                                              else entry.message)))
    return failures


def _run_failure_line(instance: dg.DagsterInstance, run_id: str) -> str:
    """The run's own failure reason, for runs that failed outside any step."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        error = getattr(data, "error", None)
        return _first_line(_user_error(error).to_string() if error else entry.message)
    return ""


def run_link(run_id: str) -> str | None:
    base = _env(UI_ENV).rstrip("/")
    return f"{base}/runs/{run_id}" if base else None


def failure_message(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """Job, run id, failed steps and the first error line, plus a UI link; secrets masked."""
    failures = _step_failures(instance, run.run_id)
    error = failures[0][1] if failures else _run_failure_line(instance, run.run_id)
    lines = [f"voronka: run of {run.job_name} failed",
             f"run id: {run.run_id}",
             "failed steps: " + (", ".join(step for step, _ in failures) or "none (the run "
                                 "failed outside its steps)"),
             f"error: {error or 'no error message recorded'}"]
    link = run_link(run.run_id)
    if link:
        lines.append(f"details: {link}")
    text = _DSN_PASSWORD.sub(r"\1***@", secret_redactor()("\n".join(lines)))
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1] + "…"


def post(destination: Destination, text: str, timeout_s: float = TIMEOUT_S) -> None:
    """POST the message; a refusal or network error names the destination, never its URL."""
    problem = None
    try:
        resp = requests.post(destination.url, json=destination.payload(text), timeout=timeout_s)
        if resp.status_code >= 300:
            problem = f"HTTP {resp.status_code}"
    except requests.RequestException as exc:  # its text holds the URL: keep only its kind
        problem = type(exc).__name__
    if problem:  # raised outside the except block: no chained exception carries the URL
        raise AlertDeliveryError(
            f"run-failure alert to {destination.name} not delivered: {problem}")


def already_alerted(instance: dg.DagsterInstance, run_id: str) -> bool:
    stored = instance.get_run_by_id(run_id)
    return stored is not None and ALERTED_TAG in stored.tags


def send_failure_alert(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """Post the failure of `run` to every configured destination; returns the names of the
    destinations reached. Also for a headless runner (`voronka run`) that may have no daemon:
    the run is tagged once posted, so the daemon's sensor and the runner never post it twice.
    Every destination is tried; the first delivery error is raised after the rest were tried."""
    if already_alerted(instance, run.run_id):
        return []
    text = failure_message(instance, run)
    reached, errors = [], []
    for destination in destinations():
        try:
            post(destination, text)
            reached.append(destination.name)
        except AlertDeliveryError as exc:
            errors.append(exc)
    if reached:
        instance.add_run_tags(run.run_id, {ALERTED_TAG: ",".join(reached)})
    if errors:
        raise errors[0]
    return reached


def build_alert_sensors() -> list[dg.SensorDefinition]:
    """The run-failure sensor when a destination is configured, else nothing."""
    if not destinations():
        return []

    @dg.run_failure_sensor(
        name=SENSOR_NAME,
        default_status=dg.DefaultSensorStatus.RUNNING,
        # every run of the instance: also runs started by `dagster asset materialize` or
        # executed in-process (`voronka run`), which carry no code-location origin
        monitor_all_code_locations=True,
        description="Posts each failed run (job, run id, failed steps, first error line, UI "
                    "link) to the configured webhook / Telegram chat (docs/ALERTS.md).",
    )
    def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
        reached = send_failure_alert(context.instance, context.dagster_run)
        context.log.info(f"run {context.dagster_run.run_id} failure posted to "
                         f"{', '.join(reached) or 'nobody: it was posted already'}")

    return [alert_on_run_failure]
