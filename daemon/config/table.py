"""Reading the TOML file: `_Table`, typed getters that record every problem (`_Problems`) instead
of raising; value checks for paths and URLs; and the helpers that show values in messages
(`_show`, `_kind`, `_plain`, `_bounds`, `_reason`)."""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from daemon.config.settings import ConfigError

_DIGITS = re.compile(r"[0-9]+\Z")


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {_reason(exc)}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text (TOML files are UTF-8)"]) from None
    except tomllib.TOMLDecodeError as exc:
        # The message carries "(at line L, column C)".
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None


class _Problems:
    """Every problem found in one config file, each prefixed with the file and key path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.errors.append(f"{self.file}: {key}: {message}")


class _Table:
    """One TOML table being read: typed getters that record problems instead of raising.

    A getter that finds a bad value records the problem and returns the default, so reading goes
    on and every problem is found; `load_settings` raises before any such value escapes.
    """

    def __init__(self, data: Mapping[str, object], path: str, problems: _Problems) -> None:
        self._data = data
        self.path = path
        self._problems = problems
        self._known: set[str] = set()

    @property
    def known(self) -> frozenset[str]:
        """The keys this table's reader asked for: the keys it understands."""
        return frozenset(self._known)

    def key(self, name: str) -> str:
        """The full key path of `name` in this table."""
        return f"{self.path}.{name}" if self.path else name

    def problem(self, name: str, message: str) -> None:
        """Record a problem with the key `name` of this table."""
        self._problems.add(self.key(name), message)

    def problem_here(self, message: str) -> None:
        """Record a problem with this table as a whole."""
        self._problems.add(self.path, message)

    def raw(self, name: str) -> object | None:
        """The value of `name` as TOML gave it (None when absent; TOML has no null)."""
        self._known.add(name)
        return self._data.get(name)

    def present(self, name: str) -> bool:
        """Whether `name` is set in this table."""
        self._known.add(name)
        return name in self._data

    def wrong_type(self, name: str, expected: str, value: object) -> None:
        """Record that `name` holds a value of the wrong TOML type."""
        self.problem(name, f"must be {expected}, got {_show(value)} ({_kind(value)})")

    def optional_string(self, name: str) -> str | None:
        """A non-empty string, or None when absent (or bad)."""
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.wrong_type(name, "a string", value)
            return None
        if not value.strip():
            self.problem(name, f"must not be empty, got {_show(value)}")
            return None
        return value

    def string(self, name: str, default: str) -> str:
        """A non-empty string, or the default."""
        value = self.optional_string(name)
        return default if value is None else value

    def required_string(self, name: str) -> str:
        """A non-empty string that must be present."""
        if not self.present(name):
            self.problem(name, "is required")
            return ""
        return self.string(name, "")

    def choice(self, name: str, default: str, options: Sequence[str]) -> str:
        """One of a fixed set of strings."""
        value = self.string(name, default)
        if value not in options:
            self.problem(name, f"must be one of {', '.join(options)}, got {_show(value)}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """true or false."""
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.wrong_type(name, "true or false", value)
            return default
        return value

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        """A TOML integer (never a boolean or a float) within the given bounds."""
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.wrong_type(name, "an integer", value)
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.problem(name, f"must be {_bounds(minimum, maximum)}, got {value}")
            return default
        return value

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        above: float | None = None,
    ) -> float:
        """A finite TOML integer or float within the given bounds (`above` is exclusive)."""
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.wrong_type(name, "a number", value)
            return default
        if not math.isfinite(value):
            self.problem(name, f"must be a finite number, got {_show(value)}")
            return default
        if above is not None and value <= above:
            self.problem(name, f"must be greater than {_plain(above)}, got {_show(value)}")
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.problem(name, f"must be {_bounds(minimum, maximum)}, got {_show(value)}")
            return default
        return float(value)

    def table(self, name: str) -> _Table:
        """A sub-table; an empty one when absent (or bad)."""
        value = self.raw(name)
        if value is None:
            value = {}
        elif not isinstance(value, dict):
            self.wrong_type(name, f"a table ([{self.key(name)}])", value)
            value = {}
        return _Table(value, self.key(name), self._problems)

    def tables(self, name: str, *, required: bool) -> list[_Table]:
        """An array of tables ([[name]]); `required` means at least one."""
        value = self.raw(name)
        header = f"[[{_plain_path(self, name)}]]"
        if value is None or value == []:
            if required:
                self.problem(name, f"at least one {header} table is required")
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.wrong_type(name, f"an array of tables ({header})", value)
            return []
        return [
            _Table(item, f"{self.key(name)}[{index}]", self._problems)
            for index, item in enumerate(value)
        ]

    def report_lines(self, lines: Sequence[str]) -> None:
        """Record problems already phrased in full (e.g. from a variant map, with line numbers)."""
        self._problems.errors.extend(lines)

    def reject_unknown(self, elsewhere: Mapping[str, str] | None = None) -> None:
        """Report every key nobody asked for, suggesting the closest known one."""
        known = sorted(self._known)
        for name in self._data:
            if name in self._known:
                continue
            # The value is never shown: an unknown key may well hold a misspelt secret.
            close = difflib.get_close_matches(name, known, n=1)
            if elsewhere and name in elsewhere:
                self.problem(name, f"unknown key here (it belongs in {elsewhere[name]})")
            elif close:
                self.problem(name, f'unknown key (did you mean "{close[0]}"?)')
            else:
                self.problem(name, "unknown key")


def _plain_path(table: _Table, name: str) -> str:
    """The TOML header spelling of a key path: `connections.locations`, without indices."""
    return re.sub(r"\[[0-9]+\]", "", table.key(name))


def _path(t: _Table, name: str, base: Path) -> Path | None:
    """A path; relative ones resolve against the config file's folder."""
    text = t.optional_string(name)
    if text is None:
        return None
    if "\0" in text:
        t.problem(name, f"is not a valid path, got {_show(text)}")
        return None
    return base / Path(text).expanduser()


def _url(t: _Table, name: str, default: str) -> str:
    text = t.string(name, default)
    parts = urlsplit(text)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in text)
    ):
        t.problem(name, f'must be an http(s) URL such as "{default}", got {_show(text)}')
    # Paths are appended to it, so one spelling: no trailing slash.
    return text.rstrip("/")


def _show(value: object) -> str:
    """A value as it would be written in TOML, shortened; never call it with a secret."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "{...}"
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(item) for item in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"between {_plain(minimum)} and {_plain(maximum)}"
    if minimum is not None:
        return f"at least {_plain(minimum)}"
    assert maximum is not None
    return f"at most {_plain(maximum)}"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
