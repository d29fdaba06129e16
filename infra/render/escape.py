"""Values inserted into generated files and commands, checked or escaped for the syntax they land in.

Defence in depth behind the site model's types: a template that inserts a value passes it through one of
these, so that a value the model let through still cannot add a line to a configuration file, a word to a
Slurm or APT line, or a command to a systemd unit. Line-oriented formats (slurm.conf, gres.conf, APT
sources, chrony.conf, systemd units) have no escape for a newline, so those checks refuse; systemd's unit
names and command lines have escapes, so those filters escape. The same functions are Jinja2 filters of
infra/render's templates (``FILTERS``) and, through playbooks/plugins/filter/gigafactory.py, of the roles'.
"""

from __future__ import annotations

import re
import unicodedata

# Unicode categories that break or hide a line: controls (\n, \r, \t, ESC, NEL ...), format characters
# (bidirectional overrides, zero-width joiners) and the line and paragraph separators.
_BREAKING = {"Cc", "Cf", "Zl", "Zp"}
# Characters no word of slurm.conf, gres.conf, topology.conf, chrony.conf or an APT sources field may hold:
# comment, quotes, line continuation.
_WORD_FORBIDDEN = "#\"'\\"
# systemd-escape leaves these as they are (and '/', which --path turns into '-').
_SYSTEMD_PLAIN = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.")


# Fast paths: printable ASCII holds no breaking character; these words hold no blank, comment, quote or backslash.
_PRINTABLE_ASCII = re.compile(r"[ -~]*")
_PLAIN_WORD = re.compile(r"[!$-&(-\[\]-~]+")


class UnsafeValue(ValueError):
    """A value that cannot stand in the syntax it was to be inserted into."""


def _label(what: str | None) -> str:
    return f"{what} " if what else ""


def one_line(value: object, what: str | None = None) -> str:
    """``value`` as text, refused if it holds a control, format or line-separator character."""
    text = str(value)
    if _PRINTABLE_ASCII.fullmatch(text):
        return text
    for ch in text:
        if unicodedata.category(ch) in _BREAKING:
            raise UnsafeValue(f"{_label(what)}{text!r} holds the control character U+{ord(ch):04X}: it would break the line it is written on")
    return text


def one_word(value: object, what: str | None = None, forbid: str = "") -> str:
    """``value`` as one word of a line-oriented configuration file: one line, no blanks, no comment,
    quote or backslash, none of ``forbid``."""
    text = str(value)
    if _PLAIN_WORD.fullmatch(text) and not (forbid and any(ch in forbid for ch in text)):
        return text
    text = one_line(text, what)
    if not text:
        raise UnsafeValue(f"{_label(what)}is empty where one word is needed")
    for ch in text:
        if ch.isspace() or ch in _WORD_FORBIDDEN or ch in forbid:
            raise UnsafeValue(f"{_label(what)}{text!r} holds {ch!r}: it would end the word it is written as")
    return text


def integer(value: object, what: str | None = None, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an integer, refused unless it is one (an int, not a bool, or ASCII digits with an optional
    leading '-') within ``minimum`` and ``maximum``: a number sink never gets a word, a blank or a fraction."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UnsafeValue(f"{_label(what)}{value!r} is not an integer")
    text = str(value)
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()):
        raise UnsafeValue(f"{_label(what)}{text!r} is not an integer")
    number = int(text)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise UnsafeValue(f"{_label(what)}{number} is outside {minimum if minimum is not None else '-inf'}..{maximum if maximum is not None else 'inf'}")
    return number


_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}")


def signed_by(value: object, what: str | None = None) -> str:
    """A deb822 ``Signed-By`` value: one or more blank-separated key files (absolute paths) or OpenPGP fingerprints
    (40 or 64 hex digits), as site_repository_key writes it (a file, and the fingerprint when the site names one)."""
    words = one_line(value, what).split(" ")
    for word in words:
        one_word(word, what)
        if not (word.startswith("/") or _FINGERPRINT.fullmatch(word)):
            raise UnsafeValue(f"{_label(what)}{word!r} is neither a key file's absolute path nor a fingerprint of 40 or "
                              "64 hex digits")
    return " ".join(words)


def secret_word(value: object, what: str | None = None) -> str:
    """A secret (a password) as one word, checked like ``one_word``; a refusal never shows the value."""
    try:
        return one_word(value, what)
    except UnsafeValue:
        raise UnsafeValue(f"{_label(what)}(not shown: a secret) is empty or holds a blank, a control character, '#', "
                          "a quote or a backslash") from None


def gres_fields(value: object, what: str | None = None) -> tuple[str, str, int]:
    """A Slurm GRES ``name:type:count`` as its three fields, refused unless it has exactly three,
    the first two single words without ':' or ',' and the last a count."""
    text = one_word(value, what or "GRES")
    parts = text.split(":")
    if len(parts) != 3 or not parts[2].isdigit() or not parts[2].isascii():
        raise UnsafeValue(f"{_label(what or 'GRES')}{text!r} is not name:type:count")
    name, type_, count = parts
    one_word(name, "GRES name", forbid=":,=")
    one_word(type_, "GRES type", forbid=":,=")
    return name, type_, int(count)


def gres(value: object, what: str | None = None) -> str:
    """A Slurm GRES ``name:type:count``, checked by ``gres_fields``, as written in slurm.conf."""
    name, type_, count = gres_fields(value, what)
    return f"{name}:{type_}:{count}"


def _systemd_escape_chars(text: str) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch == "/":
            out.append("-")
        elif ch in _SYSTEMD_PLAIN and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8"))
    return "".join(out)


def systemd_escape(value: object, what: str | None = None) -> str:
    """``systemd-escape NAME``: a string as it stands in a unit name (e.g. an interface's device unit)."""
    text = one_line(value, what)
    if not text:
        raise UnsafeValue(f"{_label(what)}is empty where a unit name part is needed")
    return _systemd_escape_chars(text)


def systemd_escape_path(value: object, what: str | None = None) -> str:
    """``systemd-escape --path PATH``: the unit name part systemd derives from an absolute path (a mount
    unit's name): '//' and '/./' collapse, the slashes at either end go, '/' becomes '-', and a leading '.',
    a '-' and every byte outside [A-Za-z0-9:_.] become \\xNN."""
    text = one_line(value, what)
    if not text.startswith("/"):
        raise UnsafeValue(f"{_label(what)}{text!r} is not an absolute path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeValue(f"{_label(what)}{text!r} is not a normalized path ('..')")
    if not parts:
        return "-"
    return _systemd_escape_chars("/".join(parts))


def systemd_value(value: object, what: str | None = None) -> str:
    """A value of a systemd unit setting (Description=, Where=, What=, RequiresMountsFor=, Name=): one line,
    no '%' (a specifier in settings that expand them, a literal in the others) and no trailing backslash
    (which would continue the line)."""
    text = one_line(value, what)
    if "%" in text:
        raise UnsafeValue(f"{_label(what)}{text!r} holds '%', a systemd specifier")
    if text.endswith("\\"):
        raise UnsafeValue(f"{_label(what)}{text!r} ends in a backslash, which would continue the line")
    return text


def systemd_quote(value: object, what: str | None = None) -> str:
    """One argument of a systemd ExecStart= line: double-quoted with C escapes, '%' and '$' doubled so that
    systemd expands neither a specifier nor an environment variable in it."""
    text = one_line(value, what)
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{text}"'


FILTERS = {
    "one_line": one_line,
    "one_word": one_word,
    "integer": integer,
    "secret_word": secret_word,
    "signed_by": signed_by,
    "gres": gres,
    "gres_fields": gres_fields,
    "systemd_escape": systemd_escape,
    "systemd_escape_path": systemd_escape_path,
    "systemd_value": systemd_value,
    "systemd_quote": systemd_quote,
}


def refuse_breaking(value: object) -> object:
    """Jinja2 ``finalize`` hook: every string a template prints is checked by ``one_line``."""
    return one_line(value) if isinstance(value, str) else value
