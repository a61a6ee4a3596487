"""Rendering of authentication steps: one line, a JSON-ready dict, a tree.

This module owns how a decoded step looks to a person or to JSON. Pure
functions: data in, strings and dicts out. Invariant: every secret (field
names in auth/redact.py) is shown as ``<redacted, N bytes>`` unless
``show_secrets`` is True, at any depth, for our objects and for the GSS
objects rendered through their own ``to_dict``.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Any

from authtrace.auth.basic import BasicChallenge, BasicCredentials
from authtrace.auth.bearer import BearerChallenge, BearerToken
from authtrace.auth.digest import DigestChallenge, DigestResponse
from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.malformed import Malformed
from authtrace.auth.ntlm import (
    AvPair,
    NtlmAuthenticate,
    NtlmChallenge,
    NtlmNegotiate,
    NtlmV2Response,
    NtlmVersion,
    TargetInfo,
    flag_names,
)
from authtrace.auth.redact import is_secret_field, redact_bytes, redact_text
from authtrace.auth.spnego import SpnegoInit, SpnegoResp
from authtrace.auth.steps import AuthStep, is_not_kept
from authtrace.fastinit import field_names
from authtrace.visible import visible_lines

MAX_DEPTH = 12

# Read-only properties worth showing next to the dataclass fields.
_EXTRA_PROPERTIES: dict[type, tuple[str, ...]] = {
    NtlmAuthenticate: ("local_call", "session_key_present", "extended_session_security"),
    NtlmV2Response: ("channel_bindings_present", "channel_bindings_all_zero"),
    BasicCredentials: ("password_length",),
    BearerToken: ("token_length",),
}

# Keys of the SPNEGO wrapper that repeat the inner token (shown flattened).
_WRAPPER_SKIP = frozenset({"inner"})

_MESSAGE_WORDS: dict[Message, str] = {
    Message.NTLM_NEGOTIATE: "NEGOTIATE",
    Message.NTLM_CHALLENGE: "CHALLENGE",
    Message.NTLM_AUTHENTICATE: "AUTHENTICATE",
}

_MECHANISM_WORDS: dict[Mechanism, str] = {
    Mechanism.NTLM: "NTLM",
    Mechanism.KERBEROS: "Kerberos",
    Mechanism.SPNEGO: "SPNEGO",
    Mechanism.NEGOEX: "NEGOEX",
    Mechanism.BASIC: "Basic",
    Mechanism.DIGEST: "Digest",
    Mechanism.BEARER: "Bearer",
    Mechanism.UNKNOWN: "unknown",
    Mechanism.NONE: "",
}


def _secret(value: Any, show_secrets: bool) -> Any:
    if show_secrets or value is None:
        return _plain(value, show_secrets, 0)
    if isinstance(value, bytes | bytearray):
        return redact_bytes(bytes(value), False)
    if isinstance(value, str):
        if value.startswith("<redacted"):
            return value  # already redacted by the object's own to_dict
        return redact_text(value, False)
    if isinstance(value, int | float | bool):
        return "<redacted>"
    # A structure under a secret name (a Kerberos ticket: realm and SPN are
    # not secret, its cipher text is): its own secret leaves get redacted.
    return _plain(value, show_secrets, 0)


# Values that render as themselves, by exact type: most leaves of a decoded
# token, answered by one set look-up before the isinstance chain below.
_AS_IS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any, show_secrets: bool, depth: int) -> Any:
    """A JSON-ready rendering of any decoded value, secrets redacted by name."""
    if depth > MAX_DEPTH:
        return "<too deep>"
    if type(value) in _AS_IS or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, NtlmVersion):
        return str(value)
    if isinstance(value, AvPair):
        return f"{value.name} ({len(value.value)} bytes)"
    if isinstance(value, dict):
        return {
            str(key): _field(str(key), item, show_secrets, depth + 1) for key, item in value.items()
        }
    if isinstance(value, list | tuple | frozenset | set):
        return [_plain(item, show_secrets, depth + 1) for item in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        try:
            rendered = to_dict(show_secrets=show_secrets)
        except TypeError:
            rendered = to_dict()
        except Exception as error:  # noqa: BLE001 - rendering never fails
            return f"<unrenderable: {type(error).__name__}>"
        return _plain(rendered, show_secrets, depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass(value, show_secrets, depth)
    return str(value)


def _field(name: str, value: Any, show_secrets: bool, depth: int) -> Any:
    if is_secret_field(name):
        return _secret(value, show_secrets)
    return _plain(value, show_secrets, depth)


def _dataclass(obj: Any, show_secrets: bool, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in field_names(obj):
        value = getattr(obj, name)
        if name == "flags" and isinstance(value, int) and hasattr(obj, "flag_names"):
            # NTLM flags by name (MS-NLMP 2.2.2.5), the number kept beside them.
            out["flags"] = list(flag_names(value))
            out["flags_value"] = f"0x{value:08x}"
            continue
        if isinstance(obj, TargetInfo) and value is None:
            continue  # absent AV pairs: the list says what is there
        out[name] = _field(name, value, show_secrets, depth + 1)
    for name in _EXTRA_PROPERTIES.get(type(obj), ()):
        out[name] = _plain(getattr(obj, name), show_secrets, depth + 1)
    return out


def _object_dict(obj: Any, show_secrets: bool) -> dict[str, Any]:
    rendered = _plain(obj, show_secrets, 0)
    if isinstance(rendered, dict):
        return rendered
    return {"value": rendered}


def _innermost(step: AuthStep) -> tuple[Any, Any]:
    """(outermost SPNEGO object or None, innermost decoded object)."""
    if step.wrapper is None:
        return None, step.token
    return step.token, step.innermost


def step_to_dict(
    step: AuthStep, show_secrets: bool = False, head: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON-ready dict: `head` (fields the caller puts first, such as the
    exchange's realm), scheme, mechanism, message, wrapper, then the decoded
    fields. A decoded field whose name is taken is written `token_<name>`
    (a Basic realm beside the origin/proxy realm is `token_realm`)."""
    out: dict[str, Any] = {
        **(head or {}),
        "scheme": step.scheme,
        "mechanism": step.mechanism.value,
        "message": step.message.value,
        "wrapper": step.wrapper.value if step.wrapper else None,
        "header": step.header,
        "kind": step.kind.value,
        "proxy": step.proxy,
    }
    if step.problem:
        out["problem"] = step.problem
    if step.raw:
        out["token_length"] = len(step.raw)
        out["raw_token"] = redact_bytes(step.raw, show_secrets)
    wrapper, inner = _innermost(step)
    if isinstance(inner, Malformed):
        out["error"] = inner.reason
        out["truncated"] = inner.truncated
    elif inner is not None:
        for key, value in _object_dict(inner, show_secrets).items():
            out[key if key not in out else f"token_{key}"] = value
    _summary(inner, out, head or {})
    if wrapper is not None:
        out["spnego"] = _wrapper_dict(wrapper, show_secrets)
    return out


def _wrapper_dict(wrapper: Any, show_secrets: bool) -> dict[str, Any]:
    """The SPNEGO wrapper's own fields. Its inner token is already shown
    flattened at the top, so a SPNEGO message leaves it out before rendering
    (it was rendered a second time only to be dropped); any other wrapper is
    rendered whole and the key dropped after."""
    if isinstance(wrapper, SpnegoInit | SpnegoResp):
        # As _object_dict would: the object's own to_dict, then _plain over
        # the result (depth 1) for the redaction of secret names at any depth.
        rendered = _plain(wrapper.to_dict(show_secrets, skip=_WRAPPER_SKIP), show_secrets, 1)
        if isinstance(rendered, dict):
            return rendered
    spnego = _object_dict(wrapper, show_secrets)
    return {key: value for key, value in spnego.items() if key not in _WRAPPER_SKIP}


def _summary(inner: Any, out: dict[str, Any], head: dict[str, Any]) -> None:
    """Top-level keys every consumer looks for, whatever object the token is
    (`token_<name>` where the caller's head took the name)."""
    spn = _safe_attr(inner, "spn")
    if isinstance(spn, str) and spn:
        out.setdefault("token_spn" if "spn" in head else "spn", spn)
    realm = _safe_attr(inner, "realm")
    if isinstance(realm, str) and realm:
        out.setdefault("token_realm" if "realm" in head else "realm", realm)
    error_code = _safe_attr(inner, "error_code")
    if isinstance(error_code, int) and not isinstance(error_code, bool):
        out["error_code"] = error_code
        name = _safe_attr(_safe_attr(inner, "error"), "name")
        if isinstance(name, str):
            out["error_name"] = name


# --- one line --------------------------------------------------------------


def _prefix(step: AuthStep) -> str:
    """``NTLM`` when the scheme says it, ``Negotiate → NTLM`` when it does not."""
    word = _MECHANISM_WORDS.get(step.mechanism, step.mechanism.value)
    scheme = step.scheme or "(no scheme)"
    if not word or scheme.lower() == word.lower():
        return scheme
    return f"{scheme} → {word}"


def _safe_attr(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - a property of hostile data may fail
        return None


def _describe_token(step: AuthStep, token: Any) -> str:
    if isinstance(token, NtlmNegotiate):
        parts = [p for p in (token.domain, token.workstation) if p]
        return "NEGOTIATE" + (f" {' / '.join(parts)}" if parts else "")
    if isinstance(token, NtlmChallenge):
        return "CHALLENGE" + (f" {token.target_name}" if token.target_name else "")
    if isinstance(token, NtlmAuthenticate):
        if token.anonymous and not token.user:
            who = "(anonymous)"
        else:
            who = f"{token.domain}\\{token.user}" if token.domain else token.user
        notes = [token.response_kind.value]
        if token.local_call:
            notes.append("local call")
        return f"AUTHENTICATE {who} ({', '.join(notes)})"
    if isinstance(token, BasicCredentials):
        if not token.has_colon:
            return f"(no colon: user and password not separable, {token.password_length} chars)"
        return f"{token.user} (password {token.password_length} chars)"
    if isinstance(token, BasicChallenge):
        return f'offer realm="{token.realm}"' if token.realm is not None else "offer"
    if isinstance(token, DigestChallenge):
        words = ["challenge"]
        if token.realm is not None:
            words.append(f'realm="{token.realm}"')
        if token.qop:
            words.append(f"qop={','.join(token.qop)}")
        if token.algorithm:
            words.append(f"algorithm={token.algorithm}")
        if token.stale:
            words.append("stale")
        return " ".join(words)
    if isinstance(token, DigestResponse):
        words = [token.username or "(no username)"]
        if token.realm is not None:
            words.append(f'realm="{token.realm}"')
        if token.uri:
            words.append(f"uri={token.uri}")
        return " ".join(words)
    if isinstance(token, BearerChallenge):
        return "challenge" + (f" error={token.error}" if token.error else "")
    if isinstance(token, BearerToken):
        if token.jwt is not None:
            claims = token.jwt.claims
            subject = claims.get("sub") or claims.get("upn") or claims.get("unique_name")
            notes = [f"sub={subject}"] if subject else []
            if token.jwt.expires:
                notes.append(f"exp={token.jwt.expires}")
            return "token (JWT" + (f", {', '.join(notes)}" if notes else "") + ")"
        return f"token ({token.token_length} chars)"
    # GSS objects: message name, then what names the service or the error.
    words = [step.message.value.replace("_", "-")]
    spn = _safe_attr(token, "spn")
    if isinstance(spn, str) and spn:
        words.append(spn)
    error = _safe_attr(token, "error")
    error_name = _safe_attr(error, "name")
    if isinstance(error_name, str):
        words.append(error_name)
    neg_state = _safe_attr(token, "neg_state")
    if step.wrapper is None and isinstance(neg_state, enum.Enum):
        words.append(str(neg_state.value))
    return " ".join(words)


def describe_step(step: AuthStep) -> str:
    """One short line, e.g. ``Negotiate → Kerberos AP-REQ HTTP/web01.contoso.com``."""
    try:
        line = _describe(step)
    except Exception as error:  # noqa: BLE001 - rendering never fails
        line = f"{step.scheme} ({type(error).__name__} while describing)"
    return line + (" [proxy]" if step.proxy else "")


def _describe(step: AuthStep) -> str:
    scheme = step.scheme or "(no scheme)"
    if step.message is Message.OFFER and step.token is None:
        return f"{scheme} (offer)"
    _wrapper, inner = _innermost(step)
    if is_not_kept(step):
        return f"{scheme} {inner.reason}"
    if isinstance(inner, Malformed):
        return f"{scheme} malformed: {inner.reason}"
    if step.message is Message.MALFORMED:
        return f"{scheme} malformed"
    if step.mechanism in (Mechanism.BASIC, Mechanism.DIGEST, Mechanism.BEARER):
        return f"{scheme} {_describe_token(step, inner)}"
    return f"{_prefix(step)} {_describe_token(step, inner)}"


# --- tree ------------------------------------------------------------------


def _tree_lines(value: Any, indent: int, lines: list[str], depth: int) -> None:
    pad = "  " * indent
    if depth > MAX_DEPTH:
        lines.append(f"{pad}…")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict) and item:
                lines.append(f"{pad}{key}:")
                _tree_lines(item, indent + 1, lines, depth + 1)
            elif isinstance(item, list) and item and not _inline(item):
                lines.append(f"{pad}{key}:")
                _tree_lines(item, indent + 1, lines, depth + 1)
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}-")
                _tree_lines(item, indent + 1, lines, depth + 1)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")


def _inline(items: list[Any]) -> bool:
    return (
        all(not isinstance(i, dict | list) for i in items) and len(", ".join(map(str, items))) < 60
    )


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_scalar(item) for item in value) if value else "(none)"
    if isinstance(value, dict):
        return "(none)"
    return str(value)


def format_step_tree(step: AuthStep, show_secrets: bool = False) -> str:
    """An indented, readable tree: the one-line description, then every field."""
    lines = [describe_step(step)]
    _tree_lines(step_to_dict(step, show_secrets), 1, lines, 0)
    return visible_lines(lines)
