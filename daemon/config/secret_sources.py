"""Secrets named by the config: `{name}_env` (an environment variable) or `{name}_file` (a file,
e.g. from systemd LoadCredential=), read into `Secret`s; never written in the file itself, and
never shown in a message."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from daemon.config.table import _path, _reason, _show, _Table
from daemon.secrets import Secret

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Shopify token prefixes: a value like this in a *_env key is the token itself, not a name.
_SHOPIFY_SECRET_PREFIXES = ("shpat_", "shpca_", "shppa_", "shpss_")


def _secret(
    t: _Table,
    name: str,
    base: Path,
    env: Mapping[str, str],
    *,
    required: bool,
    default_env: str | None = None,
    resolve: bool = True,
) -> Secret | None:
    """The secret `name`, from `{name}_env` (a variable name) or `{name}_file` (a path)."""
    env_key, file_key = f"{name}_env", f"{name}_file"
    inline = t.present(name)
    if inline:
        # The value itself is never echoed.
        t.problem(
            name,
            f"secrets must not be written in the config file; set {env_key} (an environment "
            f"variable name) or {file_key} (a file, e.g. from systemd LoadCredential=) instead",
        )
    has_env, has_file = t.present(env_key), t.present(file_key)
    variable = t.optional_string(env_key)
    path = _path(t, file_key, base)
    if has_env and has_file:
        t.problem(env_key, f"set {env_key} or {file_key}, not both")
        return None
    if not has_env and not has_file:
        if default_env is None or inline:
            if required and not inline:
                t.problem(env_key, f"is required: set {env_key} or {file_key}")
            return None
        variable = default_env
    if not resolve:
        return None
    if variable is not None:
        return _secret_from_env(t, env_key, variable, env, defaulted=not has_env)
    if path is not None:
        return _secret_from_file(t, file_key, path)
    return None  # a bad value, already reported


def _secret_from_env(
    t: _Table, key: str, variable: str, env: Mapping[str, str], *, defaulted: bool
) -> Secret | None:
    # Neither message shows the value: it may be the secret itself, pasted in the wrong place.
    if variable.startswith(_SHOPIFY_SECRET_PREFIXES):
        t.problem(
            key,
            "looks like a Shopify access token, not an environment variable name: put the "
            "token in the environment and name the variable here (value not shown)",
        )
        return None
    if not _ENV_NAME.match(variable):
        t.problem(
            key,
            "is not a valid environment variable name (letters, digits and '_', not starting "
            "with a digit); value not shown in case it is the secret itself",
        )
        return None
    value = env.get(variable)
    default_note = f" (the default for {t.key(key)})" if defaulted else ""
    if value is None:
        t.problem(key, f"environment variable {variable} is not set{default_note}")
        return None
    if not value.strip():
        t.problem(key, f"environment variable {variable} is empty{default_note}")
        return None
    return Secret(value)


def _secret_from_file(t: _Table, key: str, path: Path) -> Secret | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        t.problem(key, f"cannot read {_show(str(path))}: {_reason(exc)}")
        return None
    except UnicodeDecodeError:
        t.problem(key, f"{_show(str(path))} is not UTF-8 text")
        return None
    # `echo token > file` and LoadCredential= files end with a newline that is not the secret.
    value = text.rstrip("\r\n")
    if not value.strip():
        t.problem(key, f"{_show(str(path))} is empty")
        return None
    return Secret(value)
